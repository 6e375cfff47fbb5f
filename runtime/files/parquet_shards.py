"""A folder of Parquet shards as the output of a distributed run, and its failure records.

    OUT.parquet/part-0000000000-0000000095.parquet   path, features (list<float32>): the local
    OUT.parquet/part-0000000096-0000000191.parquet   engine's schema, one shard per run of
    OUT.failures.tsv                                 consecutive inputs, named by the first and
                                                     the last, so name order is input order

`pyarrow.parquet.read_table("OUT.parquet")` reads the folder as one table, shards in name
order. Shards are written by workers, so the folder must be on storage they all reach: a shared
filesystem or an object store (s3://, gs://).

A local output is built in `OUT.parquet.parts/` (ShardFolder): each shard is written atomically,
then its commit record `part-F-L.json` (rows, and the failed inputs with their reasons): a
shard without a record is not done. A run that dies keeps what was committed; `resume` skips
the inputs the records cover, and the finished folder becomes OUT.parquet in one rename.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from fexport.errors import OutputError

from . import atomic, remote, sinks
from .listing import Listing
from .store import ShardStore


def rows_per_group(width) -> int:
    return max(1, sinks.PARQUET_ROW_GROUP_BYTES // max(4 * int(width), 1))


def write_shard(table, folder, width):
    """Write the good rows of a batch as one shard per run of consecutive inputs in it (named
    by its first and last input: a retried task rewrites the same files), each with its commit
    record in a local folder; return one row per shard telling the driver what it held."""
    import pyarrow as pa

    return pa.concat_tables([_write_run(run, folder, width) for run in _consecutive(table)])


def _consecutive(table) -> list:
    """`table` cut where its "index" column skips (a resumed run has holes: the done inputs)."""
    indices = table["index"].to_pylist()
    cuts = [0] + [i for i in range(1, len(indices)) if indices[i] != indices[i - 1] + 1]
    return [table.slice(a, b - a) for a, b in zip(cuts, cuts[1:] + [len(indices)])]


def shard_name(first: int, last: int) -> str:
    return f"part-{first:010d}-{last:010d}"


def _write_run(table, folder, width):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ok = pc.is_null(table["error"])
    good, failed = table.filter(ok), table.filter(pc.invert(ok))
    indices = table["index"].to_pylist()
    _pause_for_tests(indices[0])
    name = f"{folder}/{shard_name(indices[0], indices[-1])}"
    local = not remote.is_uri(name)
    try:
        if good.num_rows:
            rows, groups = good.select(["path", "features"]), rows_per_group(width)
            if local:
                with atomic.atomic_path(f"{name}.parquet") as tmp:
                    pq.write_table(rows, str(tmp), row_group_size=groups)
            else:
                fs, path = remote.split(f"{name}.parquet")
                pq.write_table(rows, path, filesystem=fs, row_group_size=groups)
        if local:  # the commit: written last, so a record always finds its shard
            atomic.write_bytes(f"{name}.json", json.dumps(
                {"first": indices[0], "last": indices[-1], "rows": good.num_rows,
                 "failed": list(zip(failed["index"].to_pylist(), failed["error"].to_pylist(),
                                    map(os.fsdecode, failed["file"].to_pylist())))}).encode())
    except OSError as exc:
        raise OutputError(f"cannot write {name}.parquet: {exc}") from exc
    return _report(table, good.num_rows, failed)


def _pause_for_tests(first: int) -> None:
    """Test hook: FEXPORT_TEST_PAUSE_AT_INPUT=INDEX:FILE makes every writer of a shard from
    input INDEX on touch FILE and wait, so that a test can SIGKILL the run with some shards
    committed and others not. Unset, it costs one environment lookup per shard."""
    hook = os.environ.get("FEXPORT_TEST_PAUSE_AT_INPUT")
    if hook and first >= int(hook.split(":", 1)[0]):
        import time

        Path(hook.split(":", 1)[1]).touch()
        time.sleep(300)


def _report(table, rows, failed):
    import pyarrow as pa

    workers = table.group_by(["worker", "restarted", "node"]).aggregate(
        [("loads", "max"), ("path", "count")])
    return pa.table({"rows": [rows], "failed_index": [failed["index"].to_pylist()],
                     "failed_reason": [failed["error"].to_pylist()],
                     "failed_file": pa.array([failed["file"].to_pylist()],
                                             pa.list_(pa.binary())),
                     **{name: [workers[name].to_pylist()] for name in ("worker", "restarted",
                                                                       "node")},
                     "loads": [workers["loads_max"].to_pylist()],
                     "worker_rows": [workers["path_count"].to_pylist()]})


@contextlib.contextmanager
def staged(output, overwrite):
    """The folder the shards go to. A local output appears whole, by one rename, when the run
    succeeds; object stores have no rename, so a URI output is written in place (and deleted
    when the run fails)."""
    existing = [path for path in (output, failures_path(output)) if _exists(path)]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists: pass --overwrite to replace it, or "
                          "choose another output")
    if not remote.is_uri(output):
        with atomic.atomic_path(output, directory=True) as folder:
            os.mkdir(folder)
            yield str(folder)
        return
    remote.delete(output)
    remote.make_dir(output)
    try:
        yield output
    except BaseException:
        remote.delete(output)
        raise


def _exists(path) -> bool:
    return remote.exists(path) if remote.is_uri(path) else os.path.lexists(path)


def failures_path(output) -> str:
    return f"{str(output)[:-len('.parquet')]}.failures.tsv"


def write_failures(output, failures) -> list[str]:
    """The local engine's failure records; a stale list from an earlier run is removed."""
    path = failures_path(output)
    if not remote.is_uri(path):
        return sinks.write_failures(path, failures)
    remote.delete(path)
    if not failures:
        return []
    remote.write_bytes(path, sinks.failures_tsv(failures))
    return [path]


class ShardFolder(ShardStore):
    """A local Ray run's shards while it runs, in `OUT.parquet.parts/`, with the run's identity
    and its spooled input listing (files/listing.py) beside them."""

    LISTING = "inputs.parquet"

    @property
    def spool_path(self) -> Path:
        """Where a run's listing is spooled before the folder takes it (or a resume compares
        it with its own)."""
        return self.output.with_name(f".{self.output.name}.inputs.parquet")

    def _write_inputs(self, folder: Path, listing: Listing) -> None:
        os.replace(listing.path, folder / self.LISTING)

    def listing(self) -> Listing:
        identity = self.identity()
        return Listing(str(self.path / self.LISTING), identity["inputs"],
                       identity["inputs_sha256"])

    def keys(self):
        return self.listing().keys()

    def committed(self) -> list[dict]:
        """The commit records, in input order; a shard left without one (its writer died
        between the two) is deleted, to be written again."""
        records = sorted((json.loads(p.read_text()) for p in self.path.glob("part-*.json")),
                         key=lambda record: record["first"])
        names = {shard_name(r["first"], r["last"]) for r in records}
        for shard in self.path.glob("part-*.parquet"):
            if shard.stem not in names:
                shard.unlink()
        return records

    def finish(self, total: int) -> None:
        """Check that the records cover inputs 0..total-1 once each, drop everything but the
        shards, and rename the folder into place as the output. An earlier output (mode
        "overwrite") is replaced only now, so a run that fails leaves it as it was."""
        self._check_covers(self.committed(), total)
        for path in self.path.iterdir():
            if path.suffix != ".parquet" or path.name == self.LISTING:
                _remove(path)
        old = self.output.with_name(f".{self.output.name}.old")
        if os.path.lexists(old):  # left by a crash between the two renames below
            _remove(old)
        if os.path.lexists(self.output):
            os.replace(self.output, old)
        os.replace(self.path, self.output)
        atomic.fsync_dir(self.output.parent)
        if os.path.lexists(old):
            _remove(old)

    def _check_covers(self, records, total) -> None:
        """Records in input order cover 0..total-1 once each when each starts where the one
        before it ended: checked record by record, not input by input."""
        expected = 0
        for record in [*records, {"first": total}]:
            if record["first"] != expected:
                raise self._damaged(f"its shards do not cover inputs 0 to {total - 1} once "
                                    f"each (a gap or an overlap at input {expected})")
            expected = record.get("last", 0) + 1


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink()
