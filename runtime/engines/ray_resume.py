"""What lets a Ray run resume: the run's identity (checked as the local engine checks its own,
engines/resume.py), what the commit records of an interrupted run already hold, and the
inputs left to do. No Ray here: these work on the records and the Summary."""

from __future__ import annotations

import json

from fexport.errors import ImageError

from ..files import sinks
from ..on_error import FAIL
from . import resume
from .base import Summary

STORE_FORMAT = "ray-1"
# What a resumed run must share with the interrupted one, in the words a user knows it by.
SETTINGS = {"store_format": "the store format (another engine, or a different fexport)",
            "model_sha256": "the model file",
            "options": "the model's options (--device, --threads, --input-size, --resample, "
                       "--keep-aspect, --exif, --decode-quality)",
            "batch_size": "--batch-size", "rows_per_shard": "rows_per_shard",
            "inputs_sha256": "the input list"}


def identity(model_bytes: bytes, keys: list, options: dict, rows_per_shard, run) -> dict:
    """Everything that decides the output's bytes and its shard boundaries."""
    return {"store_format": STORE_FORMAT, "model_sha256": resume.sha256(model_bytes),
            "options": json.loads(json.dumps(options, sort_keys=True, default=str)),
            "batch_size": int(run.batch_size), "rows_per_shard": rows_per_shard,
            "inputs": len(keys), "inputs_sha256": resume.sha256(json.dumps(keys).encode())}


def summary_of(records: list[dict], keys: list, on_error: str, folder) -> Summary:
    """What the committed records hold; with on_error "fail", a recorded failure stops the
    resumed run where an uninterrupted one would have stopped."""
    failures = [failure(keys[index], reason) for r in records for index, reason in r["failed"]]
    if failures and on_error == FAIL:
        raise ImageError(f"{failures[0][1]} (recorded by the interrupted run in {folder.path})")
    return Summary(total=0, extracted=sum(r["rows"] for r in records), failures=failures,
                   engine="ray", ray_workers={})


def not_covered(records: list[dict], total: int) -> list[int]:
    covered = {i for r in records for i in range(r["first"], r["last"] + 1)}
    return [i for i in range(total) if i not in covered]


def merge(summary: Summary, more: Summary, keys: list) -> None:
    """Add a run's Summary to the resumed one's, failures in input order."""
    position = {key: i for i, key in enumerate(keys)}
    summary.extracted += more.extracted
    summary.failures = sorted(summary.failures + more.failures,
                              key=lambda pair: position.get(pair[0], len(keys)))
    for worker, seen in (more.ray_workers or {}).items():
        summary.ray_workers[worker] = seen


def failure(key, reason):
    """(key, reason) as the local engine words it: the name as it is, not as Arrow holds it."""
    shown = sinks.utf8(key)
    return key, key + reason[len(shown):] if reason.startswith(shown) else reason
