"""runtime/engines/ray_resume.py and parquet_shards.ShardFolder without Ray: what a resumed
run skips, how its failures merge, and the folder's commit records."""

import json

import pytest

from fexport.errors import ImageError, OutputError
from fexport.runtime.engines import ray_resume
from fexport.runtime.engines.base import Run, Summary
from fexport.runtime.files import parquet_shards

KEYS = [f"/img/{i}.jpg" for i in range(8)]


def _record(first, last, rows, failed=()):
    return {"first": first, "last": last, "rows": rows, "failed": [list(f) for f in failed]}


def test_only_inputs_no_record_covers_are_left_to_do():
    records = [_record(0, 1, 2), _record(4, 5, 1, [(5, "/img/5.jpg: bad")])]
    assert ray_resume.not_covered(records, 8) == [2, 3, 6, 7]
    summary = ray_resume.summary_of(records, KEYS, "skip", None)
    assert summary.extracted == 3 and summary.failures == [("/img/5.jpg", "/img/5.jpg: bad")]


def test_merged_failures_are_in_input_order():
    summary = Summary(total=0, extracted=3, failures=[("/img/5.jpg", "bad")], ray_workers={})
    more = Summary(total=0, extracted=2, failures=[("/img/2.jpg", "bad too")],
                   ray_workers={"w": {"loads": 1, "rows": 2}})
    ray_resume.merge(summary, more, KEYS)
    assert summary.extracted == 5 and [k for k, _ in summary.failures] == ["/img/2.jpg",
                                                                          "/img/5.jpg"]


def test_a_recorded_failure_stops_a_resume_with_on_error_fail(tmp_path):
    folder = parquet_shards.ShardFolder(tmp_path / "f.parquet")
    with pytest.raises(ImageError, match="bad .recorded by the interrupted run"):
        ray_resume.summary_of([_record(0, 0, 0, [(0, "bad")])], KEYS, "fail", folder)


def test_the_identity_names_what_decides_the_output():
    ident = ray_resume.identity(b"model", KEYS, {"device": "cpu"}, 2, Run(batch_size=4))
    assert set(ray_resume.SETTINGS) <= set(ident) and ident["batch_size"] == 4
    assert ident != ray_resume.identity(b"model", KEYS[:-1], {"device": "cpu"}, 2, Run(4))


def test_the_folder_drops_uncommitted_shards_and_refuses_to_finish_with_holes(tmp_path):
    folder = parquet_shards.ShardFolder(tmp_path / "f.parquet")
    folder.create({"store_format": ray_resume.STORE_FORMAT}, KEYS[:4])
    (folder.path / "part-0000000000-0000000001.parquet").write_bytes(b"rows")
    (folder.path / "part-0000000000-0000000001.json").write_text(json.dumps(_record(0, 1, 2)))
    (folder.path / "part-0000000002-0000000003.parquet").write_bytes(b"a writer died here")
    assert [r["first"] for r in folder.committed()] == [0]
    assert not (folder.path / "part-0000000002-0000000003.parquet").exists()
    with pytest.raises(OutputError, match="cover 2 inputs of 4"):
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
    folder.create({"store_format": ray_resume.STORE_FORMAT}, KEYS[:1])
    assert (output / "part-old.parquet").exists()  # a run under way leaves it alone
    (folder.path / "part-0000000000-0000000000.json").write_text(json.dumps(_record(0, 0, 0)))
    folder.finish(1)
    assert list(output.iterdir()) == [] and not folder.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]
