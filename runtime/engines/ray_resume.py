"""What lets a Ray run resume and say what it did: the run's identity (checked as the local
engine checks its own, engines/resume.py), the ranges the commit records of an interrupted run
cover, and the Tally of rows, failures and workers that becomes the Summary. No Ray here: these
work on the records and the shard writers' reports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from fexport.errors import ImageError

from ..files import digests, sinks
from ..on_error import FAIL
from .base import Summary

STORE_FORMAT = "ray-2"  # ray-2: the listing spooled to inputs.parquet, failures with their key
# What a resumed run must share with the interrupted one, in the words a user knows it by.
SETTINGS = {"store_format": "the store format (another engine, or a different fexport)",
            "model_sha256": "the model file",
            "options": "the model's options (--device, --threads, --input-size, --resample, "
                       "--keep-aspect, --exif, --decode-quality)",
            "batch_size": "--batch-size", "rows_per_shard": "rows_per_shard",
            "inputs_sha256": "the input list"}


def identity(model_bytes: bytes, listing, options: dict, rows_per_shard, run) -> dict:
    """Everything that decides the output's bytes and its shard boundaries; `listing` is the
    spooled input list (files/listing.py)."""
    return {"store_format": STORE_FORMAT, "model_sha256": digests.sha256(model_bytes),
            "options": json.loads(json.dumps(options, sort_keys=True, default=str)),
            "batch_size": int(run.batch_size), "rows_per_shard": rows_per_shard,
            "inputs": listing.count, "inputs_sha256": listing.sha256}


@dataclass
class Tally:
    """What a Ray run has done: rows, failures by input index (so that an interrupted run's
    and a resumed one's merge in input order) and the workers that did it."""

    extracted: int = 0
    failures: list = field(default_factory=list)  # (index, (key, reason))
    # "host:pid/device" -> {"loads", "rows", "restarted", "node"}: a worker process
    workers: dict = field(default_factory=dict)

    def add_records(self, records: list[dict], on_error: str, folder) -> None:
        """What an interrupted run committed; with on_error "fail", a recorded failure stops
        the resumed run where an uninterrupted one would have stopped."""
        failures = [(index, failure(key, reason)) for r in records
                    for index, reason, key in r["failed"]]
        if failures and on_error == FAIL:
            raise ImageError(f"{failures[0][1][1]} (recorded by the interrupted run in "
                             f"{folder.path})")
        self.extracted += sum(r["rows"] for r in records)
        self.failures += failures

    def add_report(self, report: dict, on_error: str) -> int:
        """Count one shard writer's report (parquet_shards.write_shard); the number of inputs
        it covered. With on_error "fail", its first failure raises."""
        failures = [(index, failure(os.fsdecode(name), reason)) for index, reason, name
                    in zip(report["failed_index"], report["failed_reason"],
                           report["failed_file"])]
        if failures and on_error == FAIL:
            raise ImageError(failures[0][1][1])
        self.extracted += report["rows"]
        self.failures += failures
        for worker, restarted, node, loads, rows in zip(
                report["worker"], report["restarted"], report["node"], report["loads"],
                report["worker_rows"]):
            seen = self.workers.setdefault(worker, {"loads": 0, "rows": 0, "node": node,
                                                    "restarted": restarted})
            seen["loads"], seen["rows"] = max(seen["loads"], loads), seen["rows"] + rows
        return report["rows"] + len(failures)

    def restarts(self) -> int:
        """Worker processes Ray started again for an actor whose process died (each gives the
        batches it held again), as each process says it was. A restarted process that died
        again before it finished a batch is not seen."""
        return sum(bool(seen["restarted"]) for seen in self.workers.values())

    def summary(self, total: int, resumed: int) -> Summary:
        nodes = len({seen["node"] for seen in self.workers.values()})
        return Summary(total=total, extracted=self.extracted, resumed=resumed, engine="ray",
                       failures=[pair for _, pair in sorted(self.failures)],
                       ray_workers=self.workers, ray_nodes=nodes, retries=self.restarts())


def covered(records: list[dict]) -> list[tuple[int, int]]:
    """The (first, last) input ranges the records cover, in input order."""
    return sorted((r["first"], r["last"]) for r in records)


def count(ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def failure(key, reason):
    """(key, reason) as the local engine words it: the name as it is, not as Arrow holds it."""
    shown = sinks.utf8(key)
    return key, key + reason[len(shown):] if reason.startswith(shown) else reason
