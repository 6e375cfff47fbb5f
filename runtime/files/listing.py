"""The inputs of a Ray run, spooled to one Parquet file as they are listed, so that a run over
millions of images never holds its input list in memory: the driver keeps one chunk at a time,
writing it and reading it back.

    index (int64)   path (string: the name as Parquet can hold it)   file (binary: its bytes)

The file is the driver's own (beside a local output's shards, where a resume finds it, or in a
temporary folder): the driver reads it back a row group at a time into Ray's object store,
which spills to disk. `Listing` says where it is, how many inputs it holds and their hash,
which is what a resumed run must match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import atomic, sinks

# Inputs per row group, and so the most the driver holds while listing: 65536 names of ~100
# bytes are a few MB.
CHUNK = 65536


@dataclass(frozen=True)
class Listing:
    """A spooled listing: its file, how many inputs it holds, and their hash."""

    path: str
    count: int
    sha256: str  # over every key's bytes, each followed by a NUL (no name holds one)

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def keys(self) -> Iterator[str]:
        """The keys in order, a row group at a time."""
        for table in self.tables(["file"]):
            yield from (os.fsdecode(name) for name in table["file"].to_pylist())

    def tables(self, columns=None):
        """The listing as Arrow tables, one per row group, in order."""
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as file:
            for group in range(file.num_row_groups):
                yield file.read_row_group(group, columns=columns)


def spool(keys: Iterable[str], path) -> Listing:
    """Write `keys` to the Parquet file `path` as they come; it appears whole, by one rename."""
    digest, count = hashlib.sha256(), 0
    with atomic.atomic_path(path) as tmp, _parquet(str(tmp)) as write:
        for chunk in _chunks(keys):
            for key in chunk:
                digest.update(os.fsencode(key) + b"\0")
            write(_table(chunk, count))
            count += len(chunk)
    return Listing(str(path), count, digest.hexdigest())


def _chunks(keys):
    """`keys` in lists of CHUNK, the last one shorter (itertools.batched is Python 3.12's)."""
    chunk = []
    for key in keys:
        chunk.append(key)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _table(chunk, first):
    import pyarrow as pa

    return pa.table({"index": pa.array(range(first, first + len(chunk)), pa.int64()),
                     "path": pa.array([sinks.utf8(key) for key in chunk], pa.string()),
                     "file": pa.array([os.fsencode(key) for key in chunk], pa.binary())})


@contextlib.contextmanager
def _parquet(target):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("index", pa.int64()), ("path", pa.string()), ("file", pa.binary())])
    writer = pq.ParquetWriter(target, schema)
    try:
        yield lambda table: writer.write_table(table, row_group_size=CHUNK)
    finally:
        writer.close()
