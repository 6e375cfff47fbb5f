"""The shard store beside an output while it is being extracted: `<output>.parts/`.

    run.json        what the run is (model hash, image loading, batch size, inputs hash...)
    inputs.json     the input keys, in order
    manifest.jsonl  one line per finished batch: shard, input range, done keys, failed keys
    00000007.npy    the features of batch 7's good inputs, row i for done[i]

A batch is committed by writing its shard atomically, then appending its manifest line and
fsyncing it: the manifest is the truth. A shard without a line (a crash between the two) is
ignored and rewritten; a torn last line (a crash mid-append) is dropped. So a crash costs at
most the batch in flight. The store is removed, by one rename, once the output is complete.

Test hook: FEXPORT_TEST_PAUSE_IN_ASSEMBLY=FILE makes `assemble` touch FILE when half of the
shards have gone into the output's temporary file and then wait, so a test can SIGKILL it
mid-write. Unset, it costs one environment lookup per assembly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fexport.errors import OutputError

from . import atomic, sinks

MANIFEST = "manifest.jsonl"


@dataclass
class Record:
    """One committed batch: inputs start..end, the keys that gave features and those that failed."""

    shard: int
    start: int
    end: int
    done: list
    failed: list  # [key, reason] pairs


class ShardStore:
    def __init__(self, output):
        output = Path(output)
        self.output = output
        self.path = output.with_name(f"{output.name}.parts")
        self._trash = output.with_name(f".{output.name}.parts.trash")

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self, identity: dict, keys: list) -> None:
        """A fresh, empty store; it appears whole (one rename) or not at all."""
        self.remove()
        with atomic.atomic_path(self.path, directory=True) as tmp:
            tmp.mkdir()
            (tmp / "run.json").write_text(json.dumps(identity, sort_keys=True, indent=1))
            self._write_inputs(tmp, keys)

    def _write_inputs(self, folder: Path, keys) -> None:
        (folder / "inputs.json").write_text(json.dumps(keys))
        (folder / MANIFEST).write_bytes(b"")

    def identity(self) -> dict:
        return json.loads(self._read("run.json"))

    def keys(self) -> list:
        return json.loads(self._read("inputs.json"))

    def records(self) -> list[Record]:
        """The committed batches, in order; a torn last line is cut off the manifest."""
        data = self._read(MANIFEST, binary=True)
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # the process died while appending this line
            with open(self.path / MANIFEST, "r+b") as f:
                f.truncate(len(complete))
        records = [self._record(line) for line in complete.splitlines()]
        self._check_sequence(records)
        return records

    def commit(self, record: Record, features: np.ndarray) -> None:
        """Make one batch durable: its shard first, then its manifest line."""
        try:
            if record.done:
                with atomic.atomic_path(self._shard(record)) as tmp:
                    np.save(tmp, np.asarray(features, dtype=np.float32))
            with open(self.path / MANIFEST, "a") as f:
                f.write(json.dumps(asdict(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def assemble(self, records: list[Record], row_shape) -> list[str]:
        """Write the output from the shards, in input order, atomically."""
        keys = [key for record in records for key in record.done]
        failures = [tuple(pair) for record in records for pair in record.failed]
        return sinks.write_chunks(self.output, keys, self._rows(records), row_shape, failures)

    def first_row_shape(self, records: list[Record]):
        """The shape of one feature row, from the first shard; None when nothing succeeded."""
        done = [record for record in records if record.done]
        return self._features(done[0]).shape[1:] if done else None

    def remove(self) -> None:
        """Delete the store: one rename makes it disappear, then the files are deleted."""
        shutil.rmtree(self._trash, ignore_errors=True)  # left by a crash during a removal
        if self.path.exists():
            os.replace(self.path, self._trash)
            shutil.rmtree(self._trash, ignore_errors=True)

    def _rows(self, records):
        done = [record for record in records if record.done]
        for count, record in enumerate(done):
            if count == len(done) // 2:
                _pause_for_tests()  # halfway through writing the output
            yield self._features(record)

    def _features(self, record: Record) -> np.ndarray:
        try:
            features = np.load(self._shard(record))
        except (OSError, ValueError) as exc:
            raise self._damaged(f"shard {record.shard} cannot be read ({exc})") from exc
        if len(features) != len(record.done):
            raise self._damaged(f"shard {record.shard} has {len(features)} rows for "
                                f"{len(record.done)} inputs")
        return features

    def _shard(self, record: Record) -> Path:
        return self.path / f"{record.shard:08d}.npy"

    def _read(self, name, binary=False):
        try:
            path = self.path / name
            return path.read_bytes() if binary else path.read_text()
        except OSError as exc:
            raise self._damaged(f"{name} cannot be read ({exc.strerror or exc})") from exc

    def _record(self, line: bytes) -> Record:
        try:
            return Record(**json.loads(line))
        except (ValueError, TypeError) as exc:
            raise self._damaged(f"a manifest line is not a batch record ({exc})") from exc

    def _check_sequence(self, records) -> None:
        for index, record in enumerate(records):
            previous_end = records[index - 1].end if index else 0
            if record.shard != index or record.start != previous_end:
                raise self._damaged(f"manifest line {index + 1} does not follow line {index}")

    def _damaged(self, detail) -> OutputError:
        return OutputError(f"the interrupted run's store {self.path} is damaged: {detail}; "
                           "pass --overwrite to start again")


def _pause_for_tests() -> None:
    marker = os.environ.get("FEXPORT_TEST_PAUSE_IN_ASSEMBLY")
    if marker:
        Path(marker).touch()
        time.sleep(120)
