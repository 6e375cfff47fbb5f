"""Extraction into a file as a crash-safe, resumable job.

Each batch is committed to a shard store beside the output (`store.py`) as soon as it is done;
at the end the output is assembled from the shards in input order, atomically, and the store is
removed. `mode="resume"` continues an interrupted run with the same model, inputs and options:
it skips the committed batches and redoes at most the one that was in flight. Because the batch
boundaries are the same as an uninterrupted run's, so are the features, bit for bit.

Without a mode, an existing output or store is never replaced: the caller must say
"overwrite" or "resume".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from fexport.errors import ImageError, OutputError, UsageError

from ..extractor import check_on_error
from ..files import atomic, images, lock, sinks
from ..files.store import Record, ShardStore

MODES = ("new", "resume", "overwrite")
STORE_FORMAT = 1
# What a resumed run must share with the interrupted one, in the words a user knows it by.
SETTINGS = {"store_format": "the store format (a different fexport version)",
            "model_sha256": "the model file", "device": "--device", "threads": "--threads",
            "ran": "the backend and precision (--backend, --precision)",
            "load": "image loading (--input-size, --resample, --keep-aspect, --exif)",
            "batch_size": "--batch-size", "inputs_sha256": "the input list"}


@dataclass
class Summary:
    total: int  # inputs
    extracted: int  # inputs with a row in the output
    failures: list = field(default_factory=list)  # (key, reason), in input order
    written: list = field(default_factory=list)  # the files written, output first
    resumed: int = 0  # inputs that an interrupted run had already done
    row_shape: tuple = ()


def extract_to_file(extractor, inputs, output, batch_size=32, on_error="skip", mode="new",
                    on_batch=None) -> Summary:
    """Features of `inputs` into `output` (.npy/.npz/.csv/.parquet), row i for the i-th good input.

    `on_batch(count)` is called after each committed batch with the inputs it covered (and
    once at the start with the inputs an interrupted run had already done). One process at a
    time writes `output`: another one's run raises OutputError at once (runtime/lock.py).
    """
    _check_arguments(output, on_error, mode)
    with lock.exclusive(output):
        return _run(extractor, inputs, output, (batch_size, on_error, mode), on_batch)


def _run(extractor, inputs, output, options, on_batch) -> Summary:
    batch_size, on_error, mode = options
    items = images.split_batch_arrays(images.expand_inputs(inputs), extractor.load_options)
    keys = [images.describe(item) for item in items]
    store = ShardStore(output)
    records = _prepare(store, mode, identity(extractor, keys, batch_size), keys)
    _refuse_recorded_failures(records, on_error, store)
    resumed = records[-1].end if records else 0
    _extract_the_rest(extractor, items, records, (batch_size, on_error), store,
                      on_batch or (lambda count: None))
    shape = tuple(store.first_row_shape(records) or (extractor.feature_dim,))
    written = _finish(store, records, shape)
    return _summary(records, len(keys), written, resumed, shape)


def _extract_the_rest(extractor, items, records, options, store, on_batch) -> None:
    """Extract and commit the batches after the committed `records`, appending to them."""
    start = records[-1].end if records else 0
    if start:
        on_batch(start)  # progress counts the inputs the interrupted run already did
    for record, features in _batches(extractor, items, start, *options, store):
        store.commit(record, features)
        records.append(record)
        on_batch(record.end - record.start)


def _finish(store, records, shape) -> list[str]:
    """Assemble the output, then delete the store and any half-written files of a crash."""
    written = store.assemble(records, shape)
    store.remove()
    for path in sinks.outputs(store.output):
        atomic.remove_leftovers(path)
    return written


def identity(extractor, keys, batch_size) -> dict:
    """Everything that decides the output's bytes, so a resumed run can be checked against it."""
    return {"store_format": STORE_FORMAT, "model_sha256": _file_sha256(extractor.path),
            "device": extractor.device, "threads": extractor.threads, "ran": str(extractor.ran),
            "load": asdict(extractor.load_options), "batch_size": int(batch_size),
            "inputs": len(keys), "inputs_sha256": _sha256(json.dumps(keys).encode())}


def _check_arguments(output, on_error, mode) -> None:
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    check_on_error(on_error)
    sinks.check_output(output)
    atomic.check_writable(output)


def _prepare(store, mode, ident, keys) -> list[Record]:
    """The batches already committed (none for a fresh run), after refusing unsafe starts."""
    if mode == "resume" and store.exists():
        _check_same_run(store, ident, keys)
        return store.records()
    if mode == "new" and store.exists():
        raise OutputError(f"an interrupted run of {store.output} left {store.path}: pass "
                          "--resume to continue it, or --overwrite to start again")
    existing = [str(p) for p in sinks.outputs(store.output) if p.exists()]
    if existing and mode != "overwrite":
        hint = "nothing to resume (no interrupted run is stored); " if mode == "resume" else ""
        raise OutputError(f"{existing[0]} already exists: {hint}pass --overwrite to replace "
                          "it, or choose another output")
    store.create(ident, keys)
    return []


def _check_same_run(store, ident, keys) -> None:
    stored = store.identity()
    for name, words in SETTINGS.items():
        if stored.get(name) != ident.get(name):
            change = _describe_change(name, stored, ident, store, keys)
            raise OutputError(f"cannot resume {store.output}: {words} differs from the "
                              f"interrupted run's ({change}); rerun with the same model, "
                              "inputs and options, or pass --overwrite to start again")


def _describe_change(name, stored, ident, store, keys) -> str:
    if name == "inputs_sha256":
        old = store.keys()
        first = next((i for i, pair in enumerate(zip(old, keys)) if pair[0] != pair[1]),
                     min(len(old), len(keys)))
        return (f"{len(old)} inputs then, {len(keys)} now; input #{first} was "
                f"{_at(old, first)}, is {_at(keys, first)}")
    then, now = stored.get(name), ident.get(name)
    if name == "model_sha256":
        return f"sha256 {str(then)[:12]}... then, {now[:12]}... now"
    return f"{json.dumps(then)} then, {json.dumps(now)} now"


def _at(keys, index) -> str:
    return repr(keys[index]) if index < len(keys) else "(none)"


def _refuse_recorded_failures(records, on_error, store) -> None:
    """A run resumed with --on-error fail stops where an uninterrupted one would have."""
    failed = [pair for record in records for pair in record.failed]
    if failed and on_error == "raise":
        raise ImageError(f"{failed[0][1]} (recorded by the interrupted run in {store.path})")


def _batches(extractor, items, start, batch_size, on_error, store):
    """(Record, features) per batch from input `start` on, numbered as in a run from 0."""
    shard = start // batch_size
    try:
        for batch in extractor.stream(items[start:], batch_size, on_error=on_error):
            end = start + len(batch.keys) + len(batch.failures)
            yield Record(shard, start, end, batch.keys, [list(f) for f in batch.failures]), \
                batch.features
            shard, start = shard + 1, end
    except ImageError as exc:
        raise ImageError(f"{exc}; the {start} inputs before its batch are kept in "
                         f"{store.path}: fix the file and rerun with --resume, or rerun with "
                         "--resume --on-error skip") from exc


def _summary(records, total, written, resumed, row_shape) -> Summary:
    failures = [tuple(pair) for record in records for pair in record.failed]
    extracted = sum(len(record.done) for record in records)
    return Summary(total, extracted, failures, written, resumed, row_shape)


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
