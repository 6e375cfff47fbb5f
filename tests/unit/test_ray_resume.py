"""runtime/engines/ray_resume.py and parquet_shards.ShardFolder without Ray: what a resumed
run skips, how its failures merge, the restarts and nodes counted, and the folder's commit
records."""

import json

import pytest

from fexport.errors import ImageError, OutputError
from fexport.runtime.engines import ray_resume
from fexport.runtime.engines.base import Run
from fexport.runtime.files import parquet_shards
from fexport.runtime.files.listing import Listing

KEYS = [f"/img/{i}.jpg" for i in range(8)]


def _record(first, last, rows, failed=()):
    return {"first": first, "last": last, "rows": rows, "failed": [list(f) for f in failed]}


def _report(rows, failed=(), workers=(("h:1/cpu", False, "node-1", 1),)):
    """A shard writer's report (parquet_shards._report) as Ray's iter_rows gives it."""
    return {"rows": rows, "failed_index": [i for i, _ in failed],
            "failed_reason": [reason for _, reason in failed],
            "failed_file": [KEYS[i].encode() for i, _ in failed],
            "worker": [w[0] for w in workers], "restarted": [w[1] for w in workers],
            "node": [w[2] for w in workers], "loads": [1] * len(workers),
            "worker_rows": [w[3] for w in workers]}


def test_the_ranges_records_cover_are_what_a_resume_skips():
    records = [_record(4, 5, 1, [(5, "/img/5.jpg: bad", KEYS[5])]), _record(0, 1, 2)]
    assert ray_resume.covered(records) == [(0, 1), (4, 5)]
    assert ray_resume.count(ray_resume.covered(records)) == 4
    tally = ray_resume.Tally()
    tally.add_records(records, "skip", None)
    summary = tally.summary(8, 4)
    assert (summary.extracted, summary.resumed, summary.total) == (3, 4, 8)
    assert summary.failures == [("/img/5.jpg", "/img/5.jpg: bad")]


def test_failures_of_records_and_reports_merge_in_input_order():
    tally = ray_resume.Tally()
    tally.add_records([_record(4, 5, 1, [(5, "/img/5.jpg: bad", KEYS[5])])], "skip", None)
    assert tally.add_report(_report(1, [(2, "/img/2.jpg: bad too")]), "skip") == 2
    assert [k for k, _ in tally.summary(8, 2).failures] == ["/img/2.jpg", "/img/5.jpg"]


def test_a_reported_failure_stops_the_run_with_on_error_fail():
    with pytest.raises(ImageError, match="/img/3.jpg: bad"):
        ray_resume.Tally().add_report(_report(0, [(3, "/img/3.jpg: bad")]), "fail")


def test_restarts_and_nodes_are_counted_over_the_reports():
    """A process Ray started again for a dead actor says so; it is counted once however many
    shards it wrote."""
    tally = ray_resume.Tally()
    tally.add_report(_report(3, workers=[("h:1/cpu", False, "n1", 2), ("h:2/cpu", False, "n2",
                                                                       1)]), "skip")
    for _ in range(2):
        tally.add_report(_report(1, workers=[("h:3/cpu", True, "n1", 1)]), "skip")
    summary = tally.summary(5, 0)
    assert (summary.retries, summary.ray_nodes) == (1, 2)
    assert summary.ray_workers["h:3/cpu"]["rows"] == 2


def test_a_recorded_failure_stops_a_resume_with_on_error_fail(tmp_path):
    folder = parquet_shards.ShardFolder(tmp_path / "f.parquet")
    with pytest.raises(ImageError, match="bad .recorded by the interrupted run"):
        ray_resume.Tally().add_records([_record(0, 0, 0, [(0, "bad", KEYS[0])])], "fail",
                                       folder)


def test_the_identity_names_what_decides_the_output():
    listing = Listing("inputs.parquet", 8, "ab" * 32)
    ident = ray_resume.identity(b"model", listing, {"device": "cpu"}, 2, Run(batch_size=4))
    assert set(ray_resume.SETTINGS) <= set(ident) and ident["batch_size"] == 4
    other = Listing("inputs.parquet", 7, "cd" * 32)
    assert ident != ray_resume.identity(b"model", other, {"device": "cpu"}, 2, Run(4))


def _listing(folder, count=4) -> Listing:
    """A listing file for ShardFolder to take in (it moves the file, and never reads it)."""
    path = folder / "spooled.parquet"
    path.write_bytes(b"a listing")
    return Listing(str(path), count, "00" * 32)


def test_the_folder_drops_uncommitted_shards_and_refuses_to_finish_with_holes(tmp_path):
    folder = parquet_shards.ShardFolder(tmp_path / "f.parquet")
    folder.create({"store_format": ray_resume.STORE_FORMAT}, _listing(tmp_path))
    assert (folder.path / folder.LISTING).read_bytes() == b"a listing"
    (folder.path / "part-0000000000-0000000001.parquet").write_bytes(b"rows")
    (folder.path / "part-0000000000-0000000001.json").write_text(json.dumps(_record(0, 1, 2)))
    (folder.path / "part-0000000002-0000000003.parquet").write_bytes(b"a writer died here")
    assert [r["first"] for r in folder.committed()] == [0]
    assert not (folder.path / "part-0000000002-0000000003.parquet").exists()
    with pytest.raises(OutputError, match="a gap or an overlap at input 2"):
        folder.finish(4)
    (folder.path / "part-0000000002-0000000003.json").write_text(json.dumps(_record(2, 3, 0)))
    folder.finish(4)
    assert sorted(p.name for p in (tmp_path / "f.parquet").iterdir()) == [
        "part-0000000000-0000000001.parquet"]


def test_finishing_replaces_an_earlier_output_only_at_the_end(tmp_path):
    """Mode "overwrite": the old output stays until the new one is complete."""
    output = tmp_path / "f.parquet"
    (output).mkdir()
    (output / "part-old.parquet").write_bytes(b"old rows")
    folder = parquet_shards.ShardFolder(output)
    folder.create({"store_format": ray_resume.STORE_FORMAT}, _listing(tmp_path, 1))
    assert (output / "part-old.parquet").exists()  # a run under way leaves it alone
    (folder.path / "part-0000000000-0000000000.json").write_text(json.dumps(_record(0, 0, 0)))
    folder.finish(1)
    assert list(output.iterdir()) == [] and not folder.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


def test_finishing_refuses_overlapping_records(tmp_path):
    folder = parquet_shards.ShardFolder(tmp_path / "f.parquet")
    folder.create({"store_format": ray_resume.STORE_FORMAT}, _listing(tmp_path, 3))
    for first, last in ((0, 1), (1, 2)):
        name = parquet_shards.shard_name(first, last)
        (folder.path / f"{name}.json").write_text(json.dumps(_record(first, last, 0)))
    with pytest.raises(OutputError, match="overlap at input 2"):
        folder.finish(3)
