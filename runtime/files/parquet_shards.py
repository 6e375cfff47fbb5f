"""A folder of Parquet shards as the output of a distributed run, and its failure records.

    OUT.parquet/part-0000000000.parquet   path, features (list<float32>): the local engine's
    OUT.parquet/part-0000004096.parquet   schema, one shard per run of consecutive inputs,
    OUT.failures.tsv                      named by the first, so name order is input order

`pyarrow.parquet.read_table("OUT.parquet")` reads the folder as one table, shards in name
order. Shards are written by workers, so the folder must be on storage they all reach: a shared
filesystem or an object store (s3://, gs://).
"""

from __future__ import annotations

import contextlib
import os

from fexport.errors import OutputError

from . import atomic, remote, sinks


def rows_per_group(width) -> int:
    return max(1, sinks.PARQUET_ROW_GROUP_BYTES // max(4 * int(width), 1))


def write_shard(table, folder, width):
    """Write the good rows of one run of consecutive inputs as one shard, named by its first
    input (a retried task rewrites the same file); return one row telling the driver what the
    shard held."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ok = pc.is_null(table["error"])
    good, failed = table.filter(ok), table.filter(pc.invert(ok))
    first = table["index"][0].as_py()
    name = f"{folder}/part-{first:010d}.parquet"
    try:
        if good.num_rows:
            fs, path = remote.split(name) if remote.is_uri(name) else (None, name)
            pq.write_table(good.select(["path", "features"]), path, filesystem=fs,
                           row_group_size=rows_per_group(width))
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {exc}") from exc
    return _report(table, good.num_rows, failed)


def _report(table, rows, failed):
    import pyarrow as pa

    workers = table.group_by("worker").aggregate([("loads", "max"), ("path", "count")])
    return pa.table({"rows": [rows], "failed_index": [failed["index"].to_pylist()],
                     "failed_reason": [failed["error"].to_pylist()],
                     "worker": [workers["worker"].to_pylist()],
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
