"""runtime/files/store.py: the resumable shard store. The manifest is the truth: a shard
without a line is ignored, a torn last line is dropped, a damaged store is named."""

import json

import numpy as np
import pytest

from fexport.errors import OutputError
from fexport.runtime.files.store import MANIFEST, Record, ShardStore

ROWS = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)


@pytest.fixture
def store(tmp_path):
    store = ShardStore(tmp_path / "features.npy")
    store.create({"model": "abc", "batch_size": 2}, ["a", "b", "c", "d", "e"])
    return store


def _commit_all(store):
    store.commit(Record(0, 0, 2, ["a", "b"], []), ROWS[:2])
    store.commit(Record(1, 2, 4, ["c"], [["d", "d: empty"]]), ROWS[2:3])
    store.commit(Record(2, 4, 5, [], [["e", "e: damaged"]]), np.zeros((0, 2)))


def test_a_new_store_holds_the_run_and_its_inputs(store, tmp_path):
    assert store.path == tmp_path / "features.npy.parts" and store.exists()
    assert store.identity() == {"model": "abc", "batch_size": 2}
    assert store.keys() == ["a", "b", "c", "d", "e"]
    assert store.records() == []
    assert store.first_row_shape([]) is None


def test_committed_batches_read_back_in_order_and_assemble_the_output(store, tmp_path):
    _commit_all(store)
    records = store.records()
    assert [r.shard for r in records] == [0, 1, 2]
    assert records[1] == Record(1, 2, 4, ["c"], [["d", "d: empty"]])
    assert not (store.path / "00000002.npy").exists()  # a batch with nothing done: no shard
    assert store.first_row_shape(records) == (2,)
    written = store.assemble(records, (2,))
    assert written[0] == str(tmp_path / "features.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "features.npy"), ROWS[:3])
    assert (tmp_path / "features.paths.txt").read_text() == "a\nb\nc\n"
    assert (tmp_path / "features.failures.tsv").read_text() == "d\td: empty\ne\te: damaged\n"


def test_a_torn_last_line_is_cut_off_and_a_shard_without_a_line_ignored(store):
    store.commit(Record(0, 0, 2, ["a", "b"], []), ROWS[:2])
    np.save(store.path / "00000001.npy", ROWS[2:4])  # a crash after the shard, before its line
    with open(store.path / MANIFEST, "ab") as f:
        f.write(b'{"shard": 1, "start": 2')  # a crash mid-append
    assert [r.shard for r in store.records()] == [0]
    assert (store.path / MANIFEST).read_bytes().endswith(b"}\n")
    store.commit(Record(1, 2, 4, ["c", "d"], []), ROWS[2:4])
    assert [r.end for r in store.records()] == [2, 4]


def test_remove_makes_the_store_disappear(store, tmp_path):
    _commit_all(store)
    store.remove()
    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    store.remove()  # nothing to do


def test_create_replaces_an_earlier_store(store):
    _commit_all(store)
    store.create({"model": "new"}, ["x"])
    assert store.identity() == {"model": "new"} and store.records() == []
    assert sorted(p.name for p in store.path.iterdir()) == ["inputs.json", MANIFEST, "run.json"]


@pytest.mark.parametrize("damage, words", [
    (lambda s: (s.path / MANIFEST).write_text("not json\n"), "not a batch record"),
    (lambda s: (s.path / MANIFEST).write_text(json.dumps({"shard": 0}) + "\n"),
     "not a batch record"),
    (lambda s: (s.path / MANIFEST).write_text(
        json.dumps({"shard": 1, "start": 0, "end": 2, "done": [], "failed": []}) + "\n"),
     "manifest line 1 does not follow line 0"),
    (lambda s: (s.path / MANIFEST).unlink(), "manifest.jsonl cannot be read"),
])
def test_a_damaged_manifest_is_named(store, damage, words):
    damage(store)
    with pytest.raises(OutputError, match=words) as caught:
        store.records()
    assert "pass --overwrite to start again" in str(caught.value)


def test_a_damaged_shard_is_named_when_assembling(store):
    store.commit(Record(0, 0, 2, ["a", "b"], []), ROWS[:2])
    np.save(store.path / "00000000.npy", ROWS[:3])
    with pytest.raises(OutputError, match="shard 0 has 3 rows for 2 inputs"):
        store.assemble(store.records(), (2,))
    (store.path / "00000000.npy").write_bytes(b"junk")
    with pytest.raises(OutputError, match="shard 0 cannot be read"):
        store.first_row_shape(store.records())


def test_a_missing_run_file_is_named(store):
    (store.path / "run.json").unlink()
    with pytest.raises(OutputError, match="run.json cannot be read"):
        store.identity()
