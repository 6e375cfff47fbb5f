"""Read a features file of any format back as (paths, features, failures), for the tests."""

import csv
from pathlib import Path

import numpy as np


def read_features(path):
    path = Path(path)
    reader = {".npy": _npy, ".npz": _npz, ".csv": _csv, ".parquet": _parquet}[path.suffix]
    paths, features = reader(path)
    failures = {}
    tsv = path.with_name(f"{path.stem}.failures.tsv")
    if path.suffix == ".npz":
        data = np.load(path)
        failures = dict(zip(data["failed_paths"], data["failed_reasons"]))
    elif tsv.exists():
        failures = dict(line.split("\t", 1) for line in tsv.read_text().splitlines())
    return paths, features, failures


def _npy(path):
    return path.with_name(f"{path.stem}.paths.txt").read_text().splitlines(), np.load(path)


def _npz(path):
    data = np.load(path)
    return list(data["paths"]), data["features"]


def _csv(path):
    rows = list(csv.reader(open(path)))
    assert rows[0][:2] == ["path", "f0"]
    return [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]],
                                              np.float32)


def _parquet(path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    features = np.array(table.column("features").to_pylist(), np.float32)
    return table.column("path").to_pylist(), features
