"""runtime/files/sinks.py: features written as .npy (+ .paths.txt), .npz, .csv, .parquet;
failures recorded; bytes that depend only on the rows, never on how they were chunked."""

import csv
import os

import numpy as np
import pytest

from fexport.errors import OutputError, UsageError
from fexport.extras import MissingDependencyError, installed
from fexport.runtime.files import sinks

KEYS = ["a.png", "dir/b.png", "c.png", "d.png", "e.png"]
FEATURES = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
FAILURES = [("bad.png", "bad.png: the file is empty (0 bytes); expected an image"),
            ("worse.png", "two\nlines")]
LOCAL = (".npy", ".npz", ".csv")


def test_npy_holds_the_rows_and_a_paths_file(tmp_path):
    out = tmp_path / "f.npy"
    written = sinks.write(out, KEYS, FEATURES)
    assert written == [str(out), str(tmp_path / "f.paths.txt")]
    loaded = np.load(out)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, FEATURES)
    assert (tmp_path / "f.paths.txt").read_text().splitlines() == KEYS
    assert not (tmp_path / "f.failures.tsv").exists()


def test_npz_holds_rows_paths_and_failures(tmp_path):
    out = tmp_path / "f.npz"
    assert sinks.write(out, KEYS, FEATURES, FAILURES) == [str(out)]
    with np.load(out) as data:
        np.testing.assert_array_equal(data["features"], FEATURES)
        assert list(data["paths"]) == KEYS
        assert list(data["failed_paths"]) == ["bad.png", "worse.png"]
        assert data["failed_reasons"][1] == "two lines"  # one line per reason
    assert not (tmp_path / "f.failures.tsv").exists()


def test_csv_rows_read_back_to_the_same_float32_values(tmp_path):
    out = tmp_path / "f.csv"
    sinks.write(out, KEYS, FEATURES)
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "f0", "f1", "f2"]
    assert [row[0] for row in rows[1:]] == KEYS
    values = np.array([[float(v) for v in row[1:]] for row in rows[1:]], np.float32)
    np.testing.assert_array_equal(values, FEATURES)  # repr of a float round-trips exactly


def test_failures_go_beside_the_output_and_a_stale_list_is_removed(tmp_path):
    out = tmp_path / "f.csv"
    written = sinks.write(out, KEYS, FEATURES, FAILURES)
    tsv = tmp_path / "f.failures.tsv"
    assert written[-1] == str(tsv)
    assert tsv.read_text().splitlines() == [
        "bad.png\tbad.png: the file is empty (0 bytes); expected an image", "worse.png\ttwo lines"]
    sinks.write(out, KEYS, FEATURES)  # a later run with no failures
    assert not tsv.exists()


@pytest.mark.parametrize("suffix", LOCAL)
def test_the_bytes_do_not_depend_on_the_chunking(tmp_path, suffix):
    whole, chunked = tmp_path / f"whole{suffix}", tmp_path / f"chunked{suffix}"
    sinks.write(whole, KEYS, FEATURES, FAILURES)
    sinks.write_chunks(chunked, KEYS, [FEATURES[:1], FEATURES[1:1], FEATURES[1:4], FEATURES[4:]],
                       (3,), FAILURES)
    assert whole.read_bytes() == chunked.read_bytes()


def test_npy_keeps_multidimensional_rows(tmp_path):
    grid = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    sinks.write(tmp_path / "g.npy", ["x", "y"], grid)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), grid)


def test_wrong_row_counts_and_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="5 feature rows for 4 keys"):
        sinks.write(tmp_path / "f.npy", KEYS[:4], FEATURES)
    with pytest.raises(ValueError, match=r"rows of shape \(2,\), expected \(3,\)"):
        sinks.write_chunks(tmp_path / "f.npy", KEYS, [FEATURES[:, :2]], (3,))


def test_names_with_line_breaks_stay_on_one_line_and_odd_bytes_survive(tmp_path):
    odd = os.fsdecode(b"caf\xe9.png")  # not UTF-8: held as a surrogate, written as its byte
    keys = ["tab\there.png", "new\nline.png", odd]
    sinks.write(tmp_path / "f.npy", keys, FEATURES[:3], [(odd, "no")])
    assert (tmp_path / "f.paths.txt").read_bytes() == \
        b"tab\\there.png\nnew\\nline.png\ncaf\xe9.png\n"
    assert (tmp_path / "f.failures.tsv").read_bytes() == b"caf\xe9.png\tno\n"
    sinks.write(tmp_path / "f.csv", keys, FEATURES[:3])
    with open(tmp_path / "f.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        assert [row[0] for row in list(csv.reader(f))[1:]] == keys  # CSV keeps names exactly
    assert sinks.utf8(odd) == "caf\\xe9.png"


def test_outputs_lists_every_file_a_run_may_write(tmp_path):
    assert sinks.outputs(tmp_path / "f.npy") == [
        tmp_path / "f.npy", tmp_path / "f.paths.txt", tmp_path / "f.failures.tsv"]
    assert sinks.outputs(tmp_path / "f.npz") == [tmp_path / "f.npz"]
    assert sinks.outputs(tmp_path / "f.csv") == [tmp_path / "f.csv",
                                                 tmp_path / "f.failures.tsv"]


def test_unknown_formats_and_missing_folders_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"unknown format \.txt; use one of \.npy"):
        sinks.write(tmp_path / "f.txt", KEYS, FEATURES)
    with pytest.raises(UsageError, match=r"unknown format \(none\)"):
        sinks.check_output(tmp_path / "features")
    with pytest.raises(OutputError, match="does not exist"):
        sinks.write(tmp_path / "nowhere" / "f.npy", KEYS, FEATURES)


@pytest.mark.skipif(installed("pyarrow"), reason="pyarrow is installed here")
def test_parquet_without_pyarrow_names_the_extra(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"fexport\[parquet\]"):
        sinks.check_output(tmp_path / "f.parquet")


def test_parquet_holds_paths_and_feature_lists(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(sinks, "PARQUET_ROW_GROUP_BYTES", 8 * 3)  # two rows a group
    out = tmp_path / "f.parquet"
    sinks.write(out, KEYS, FEATURES, FAILURES)
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == KEYS
    np.testing.assert_array_equal(np.array(table.column("features").to_pylist(), np.float32),
                                  FEATURES)
    assert pq.ParquetFile(out).metadata.num_row_groups == 3  # 2 + 2 + 1 rows
    assert (tmp_path / "f.failures.tsv").exists()
