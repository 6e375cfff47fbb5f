"""Feature outputs: .npy (+ .paths.txt), .npz, .csv, .parquet, each written atomically.

Failed inputs are recorded with their reasons: inside a .npz, beside the other formats as
`<output>.failures.tsv` (path, tab, reason), written only when something failed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fexport.errors import OutputError, UsageError

from . import atomic

FORMATS = (".npy", ".npz", ".csv", ".parquet")


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


def write(path, keys, features, failures=()) -> list[str]:
    """Write features (row i for keys[i]) and the failures; the paths written, output first."""
    suffix = check_output(path)
    features = np.asarray(features, dtype=np.float32)
    try:
        written = _WRITERS[suffix](Path(path), list(keys), features, list(failures))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if failures and suffix != ".npz":
        failed = sidecar(path, "failures.tsv")
        text = "".join(f"{key}\t{_one_line(reason)}\n" for key, reason in failures)
        atomic.write_bytes(failed, text.encode())
        written.append(str(failed))
    return written


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _npy(path, keys, features, failures):
    with atomic.atomic_path(path) as tmp:
        np.save(tmp, features)
    paths = sidecar(path, "paths.txt")
    atomic.write_bytes(paths, "".join(f"{k}\n" for k in keys).encode())
    return [str(path), str(paths)]


def _npz(path, keys, features, failures):
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=features, paths=np.array(keys, dtype=str),
                     failed_paths=np.array([k for k, _ in failures], dtype=str),
                     failed_reasons=np.array([_one_line(r) for _, r in failures], dtype=str))
    return [str(path)]


def _csv(path, keys, features, failures):
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *(f"f{i}" for i in range(features.shape[1]))])
            for key, row in zip(keys, features):
                writer.writerow([key, *(repr(float(v)) for v in row)])
    return [str(path)]


def _parquet(path, keys, features, failures):
    pa, pq = _pyarrow()
    flat = pa.array(features.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, features.size + 1, max(features.shape[1], 1),
                                 dtype=np.int32)[:len(keys) + 1])
    column = pa.ListArray.from_arrays(offsets, flat)
    table = pa.table({"path": pa.array(keys, pa.string()), "features": column})
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return [str(path)]


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UsageError("writing .parquet needs pyarrow: pip install 'fexport[parquet]', or "
                         "choose .npy, .npz or .csv") from exc
    return pa, pq


_WRITERS = {".npy": _npy, ".npz": _npz, ".csv": _csv, ".parquet": _parquet}
