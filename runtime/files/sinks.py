"""Feature outputs: .npy (+ .paths.txt), .npz, .csv, .parquet, each written atomically.

Failed inputs are recorded with their reasons: inside a .npz, beside the other formats as
`<output>.failures.tsv` (path, tab, reason), written only when something failed (a stale one
from an earlier run is removed). Features are written chunk by chunk, so memory stays bounded
by one chunk, and the bytes depend only on the rows: no timestamps, no chunking artefacts, so
a resumed run's file is byte-identical to an uninterrupted one.

File names, which on POSIX may hold any bytes but "/" and NUL: .npz and .csv keep every name
exactly (CSV quotes it, and writes bytes that are not UTF-8 as they are); .paths.txt and
.failures.tsv write a newline, carriage return or tab inside a name as \\n, \\r, \\t; .parquet,
whose strings must be UTF-8, writes such bytes as \\xNN.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import numpy as np

from fexport.errors import OutputError, UsageError
from fexport.extras import require

from . import atomic

FORMATS = (".npy", ".npz", ".csv", ".parquet")
PARQUET_ROW_GROUP_BYTES = 64 << 20  # rows per group follow from the feature width
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed member time, so the same rows give the same bytes


def check_output(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"output {path}: unknown format {suffix or '(none)'}; use one of "
                         f"{', '.join(FORMATS)}")
    if suffix == ".parquet":
        _pyarrow()
    return suffix


def sidecar(path, name) -> Path:
    """`features.npy` -> `features.paths.txt` for name "paths.txt"."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{name}")


def outputs(path) -> list[Path]:
    """Every file a run may write for `path`: the output, then its sidecars."""
    suffix = check_output(path)
    names = {".npy": ["paths.txt", "failures.tsv"], ".npz": []}.get(suffix, ["failures.tsv"])
    return [Path(path)] + [sidecar(path, name) for name in names]


def write(path, keys, features, failures=()) -> list[str]:
    """Write features (row i for keys[i]) and the failures; the paths written, output first."""
    features = np.asarray(features, dtype=np.float32)
    return write_chunks(path, keys, [features], features.shape[1:], failures)


def write_chunks(path, keys, chunks, row_shape, failures=()) -> list[str]:
    """Like `write`, with the features given as consecutive chunks of rows of `row_shape`."""
    suffix = check_output(path)
    rows = _checked_rows(chunks, len(keys), tuple(row_shape))
    try:
        written = _WRITERS[suffix](Path(path), list(keys), rows, tuple(row_shape),
                                   list(failures))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if suffix != ".npz":
        written += write_failures(sidecar(path, "failures.tsv"), failures)
    return written


def _checked_rows(chunks, count, row_shape):
    """The chunks as float32, checked to add up to `count` rows of `row_shape`."""
    seen = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype="<f4")
        if chunk.shape[1:] != row_shape:
            raise ValueError(f"feature rows of shape {chunk.shape[1:]}, expected {row_shape}")
        seen += len(chunk)
        yield chunk
    if seen != count:
        raise ValueError(f"{seen} feature rows for {count} keys")


def write_failures(path, failures) -> list[str]:
    """`path` holding the failure records, or no `path` at all when nothing failed."""
    path = Path(path)
    if not failures:
        if path.exists():
            os.remove(path)  # a stale list from an earlier run would describe another run
        return []
    atomic.write_bytes(path, failures_tsv(failures))
    return [str(path)]


def failures_tsv(failures) -> bytes:
    """The bytes of a .failures.tsv: one `key<TAB>reason` line per failed input."""
    return _encoded("".join(f"{_line_safe(key)}\t{_one_line(reason)}\n"
                            for key, reason in failures))


def _one_line(text) -> str:
    return " ".join(str(text).split())


# File names are arbitrary bytes on POSIX: Python holds the non-UTF-8 ones as surrogates.
def _encoded(text: str) -> bytes:
    """UTF-8, with a non-UTF-8 file name written back as its original bytes."""
    return text.encode("utf-8", "surrogateescape")


def utf8(key: str) -> str:
    """Valid UTF-8 for formats that demand it (parquet): bytes that are not become \\xNN."""
    return _encoded(key).decode("utf-8", "backslashreplace")


def _line_safe(key: str) -> str:
    """A name with a newline, carriage return or tab would break a line-per-name file."""
    return key.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _npy_header(count, row_shape) -> dict:
    return {"descr": "<f4", "fortran_order": False, "shape": (count, *row_shape)}


def _npy(path, keys, rows, row_shape, failures):
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, _npy_header(len(keys), row_shape))
            for chunk in rows:
                f.write(chunk.tobytes())
    paths = sidecar(path, "paths.txt")
    atomic.write_bytes(paths, _encoded("".join(f"{_line_safe(k)}\n" for k in keys)))
    return [str(path), str(paths)]


def _npz(path, keys, rows, row_shape, failures):
    arrays = {"paths": np.array(keys, dtype=str),
              "failed_paths": np.array([k for k, _ in failures], dtype=str),
              "failed_reasons": np.array([_one_line(r) for _, r in failures], dtype=str)}
    with atomic.atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            with _zip_member(archive, "features.npy") as f:
                np.lib.format.write_array_header_1_0(f, _npy_header(len(keys), row_shape))
                for chunk in rows:
                    f.write(chunk.tobytes())
            for name, array in arrays.items():
                with _zip_member(archive, f"{name}.npy") as f:
                    np.lib.format.write_array(f, array)
    return [str(path)]


def _zip_member(archive, name):
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.external_attr = 0o600 << 16  # what numpy's own savez gives its members
    return archive.open(info, "w", force_zip64=True)  # numpy forces zip64 too (gh-10776)


def _csv(path, keys, rows, row_shape, failures):
    width = int(np.prod(row_shape))
    start = 0
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *(f"f{i}" for i in range(width))])
            for chunk in rows:
                for key, row in zip(keys[start:], chunk.reshape(len(chunk), width)):
                    writer.writerow([key, *(repr(float(v)) for v in row)])
                start += len(chunk)
    return [str(path)]


def _parquet(path, keys, rows, row_shape, failures):
    pa, pq = _pyarrow()
    width = int(np.prod(row_shape))
    schema = pa.schema([("path", pa.string()), ("features", pa.list_(pa.float32()))])
    group = max(1, PARQUET_ROW_GROUP_BYTES // max(4 * width, 1))
    start = 0
    with atomic.atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for block in _regroup(rows, group):
                writer.write_table(_table(pa, keys[start:start + len(block)], block, width,
                                          schema), row_group_size=group)
                start += len(block)
    return [str(path)]


def _table(pa, keys, block, width, schema):
    flat = pa.array(block.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(len(block) + 1, dtype=np.int32) * width)
    column = pa.ListArray.from_arrays(offsets, flat)
    names = pa.array([utf8(key) for key in keys], pa.string())
    return pa.Table.from_arrays([names, column], schema=schema)


def _regroup(chunks, size):
    """Blocks of exactly `size` rows (the last may be shorter), whatever the chunks were, so
    the file does not depend on how the rows arrived."""
    pending, count = [], 0
    for chunk in chunks:
        pending.append(chunk)
        count += len(chunk)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, count = [joined[size:]], count - size
    if count:
        yield np.concatenate(pending)


def _pyarrow():
    purpose = "writing .parquet (.npy, .npz and .csv need nothing more)"
    return require("pyarrow", purpose), require("pyarrow.parquet", purpose)


_WRITERS = {".npy": _npy, ".npz": _npz, ".csv": _csv, ".parquet": _parquet}
