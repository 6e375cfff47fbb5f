"""Extraction into a file as a crash-safe, resumable job.

Each batch is committed to a shard store beside the output (`store.py`) as soon as it is done;
at the end the output is assembled from the shards in input order, atomically, and the store is
removed. `mode="resume"` continues an interrupted run with the same model, inputs and options:
it skips the committed batches and redoes at most the one that was in flight. Because the batch
boundaries are the same as an uninterrupted run's, so are the features, bit for bit.

With mode "new" (the default), an existing output or store is never replaced: the caller must
say "overwrite" or "resume". Called through `engines.extract_to_file`, which checks the settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from fexport.errors import ImageError

from ..files import atomic, digests, images, lock, sinks
from ..files.inputs import expand
from ..files.store import Record, ShardStore
from ..on_error import FAIL
from ..stages import StageTimes, timing
from . import resume
from .base import Run, Summary, check_options, open_model

STORE_FORMAT = 1
# What a resumed run must share with the interrupted one, in the words a user knows it by.
SETTINGS = {"store_format": "the store format (a different fexport version)",
            "model_sha256": "the model file", "device": "--device", "threads": "--threads",
            "ran": "the backend and precision (--backend, --precision)",
            "load": "image loading (--input-size, --resample, --keep-aspect, --exif, "
                    "--decode-quality)",
            "batch_size": "--batch-size", "inputs_sha256": "the input list"}


def check(output, run: Run, options) -> None:
    """Refuse what no run could do, before a model is opened."""
    check_options(options, "local")
    sinks.check_output(output)
    atomic.check_writable(output)


def extract_to_file(extractor_or_path, inputs, output, run: Run, **extractor_options) -> Summary:
    """Features of `inputs` into `output` (.npy/.npz/.csv/.parquet), row i for the i-th good input.

    `run.on_progress(count)` is called after each committed batch with the inputs it covered
    (and once at the start with the inputs an interrupted run had already done), after
    `run.on_listed(count)` with the number of inputs, once they are listed. One process
    at a time writes `output`: another one's run raises OutputError at once (files/lock.py).
    """
    with lock.exclusive(output):  # before the model loads: a second run refuses at once
        extractor = open_model(extractor_or_path, extractor_options)
        try:
            return _run(extractor, expand(inputs, extractor.load_options), output, run)
        finally:
            if extractor is not extractor_or_path:  # opened here: its decoders end here
                extractor.close()


def _run(extractor, items, output, run: Run) -> Summary:
    keys = [images.describe(item) for item in items]
    run.listed(len(keys))
    store = ShardStore(output)
    records = _prepare(store, run.mode, identity(extractor, keys, run.batch_size), keys)
    _refuse_recorded_failures(records, run.on_error, store)
    resumed = records[-1].end if records else 0
    stages, started = StageTimes(), time.perf_counter()
    _extract_the_rest(extractor, items, records, run, store, stages)
    shape = tuple(store.first_row_shape(records) or (extractor.feature_dim,))
    with timing(stages, "write"):
        written = _finish(store, records, shape)
    stages.total = time.perf_counter() - started
    return _summary(records, len(keys), written, shape, resumed=resumed, ran=_ran(extractor),
                    stages=stages, seconds=stages.total)


def _ran(extractor) -> str:
    """What ran; with decode="gpu", also where the images were decoded and why not on the GPU."""
    decoded = extractor.decoded
    if decoded is None:
        return str(extractor.ran)
    why = ", ".join(f"{reason} {count}" for reason, count in sorted(decoded["reasons"].items()))
    return (f"{extractor.ran}; {decoded['gpu']} decoded on the GPU, {decoded['cpu_fallback']} "
            f"on the CPU" + (f" ({why})" if why else ""))


def _extract_the_rest(extractor, items, records, run: Run, store, stages) -> None:
    """Extract and commit the batches after the committed `records`, appending to them."""
    start = records[-1].end if records else 0
    if start:
        run.progress(start)  # progress counts the inputs the interrupted run already did
    for record, features in _batches(extractor, items, start, run, store, stages):
        with timing(stages, "write"):
            store.commit(record, features)
        records.append(record)
        run.progress(record.end - record.start)


def _finish(store, records, shape) -> list[str]:
    """Assemble the output, then delete the store and any half-written files of a crash."""
    written = store.assemble(records, shape)
    store.remove()
    for path in sinks.outputs(store.output):
        atomic.remove_leftovers(path)
    return written


def identity(extractor, keys, batch_size) -> dict:
    """Everything that decides the output's bytes, so a resumed run can be checked against it."""
    return {"store_format": STORE_FORMAT, "model_sha256": digests.file_sha256(extractor.path),
            "device": extractor.device, "threads": extractor.threads, "ran": str(extractor.ran),
            "load": _load_identity(extractor.load_options), "batch_size": int(batch_size),
            "inputs": len(keys), "inputs_sha256": digests.sha256(json.dumps(keys).encode())}


def _load_identity(options) -> dict:
    """The loading options; decode_quality only when it is not the default, so that a run
    started before that option existed resumes."""
    identity = asdict(options)
    if identity["decode_quality"] == "exact":
        del identity["decode_quality"]
    return identity


def _prepare(store, mode, ident, keys) -> list[Record]:
    """The batches already committed (none for a fresh run), after refusing unsafe starts."""
    outputs = [str(p) for p in sinks.outputs(store.output)]
    return store.records() if resume.prepare(store, mode, ident, keys, SETTINGS, outputs) \
        else []


def _refuse_recorded_failures(records, on_error, store) -> None:
    """A run resumed with --on-error fail stops where an uninterrupted one would have."""
    failed = [pair for record in records for pair in record.failed]
    if failed and on_error == FAIL:
        raise ImageError(f"{failed[0][1]} (recorded by the interrupted run in {store.path})")


def _batches(extractor, items, start, run: Run, store, stages):
    """(Record, features) per batch from input `start` on, numbered as in a run from 0."""
    shard = start // run.batch_size
    try:  # a slice of Items is Items: the stream takes them as they are, not expanded again
        for batch in extractor.stream(items[start:], run.batch_size, on_error=run.on_error,
                                      stages=stages):
            end = start + len(batch.keys) + len(batch.failures)
            yield Record(shard, start, end, batch.keys, [list(f) for f in batch.failures]), \
                batch.features
            shard, start = shard + 1, end
    except ImageError as exc:
        raise ImageError(f"{exc}; the {start} inputs before its batch are kept in "
                         f"{store.path}: fix the file and rerun with --resume, or rerun with "
                         "--resume --on-error skip") from exc


def _summary(records, total, written, row_shape, **details) -> Summary:
    failures = [tuple(pair) for record in records for pair in record.failed]
    extracted = sum(len(record.done) for record in records)
    return Summary(total, extracted, failures, written, row_shape=row_shape, **details)
