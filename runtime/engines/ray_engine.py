"""Feature extraction on Ray Data, for collections that outgrow one machine.

    paths or URIs --Ray Dataset--> actor pool, one FeatureExtractor per actor
        --> shard writers: OUT.parquet/part-<first input>.parquet (+ OUT.failures.tsv)

The driver opens the model once to check it (so a bad model fails as with `--engine local`,
before any worker starts), then puts its bytes in the object store: every actor fetches them
once, opens one FeatureExtractor and keeps it for all the batches it is given, so workers need
no shared filesystem for the model. Actors load images with the local engine's loader
(`images.load` with the extractor's LoadOptions) and run `FeatureExtractor.predict`: ONNX Runtime
on the CPU gives an image the same numbers whatever batch it is in, so the features are the
local engine's, bit for bit (tests/test_ray.py compares them).

The Dataset keeps its input order, so the shards sorted by name hold the local engine's rows in
the same order, and the first failure the driver meets is the first bad input in that order:
`on_error="raise"` stops there and nothing is kept, like the local engine.

Ray is imported only when a function here runs; without it, the error names the extra to install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fexport.errors import EngineError, FexportError, ImageError, ModelNotFoundError, UsageError
from fexport.extras import require

from ..extractor import FeatureExtractor, check_on_error
from ..files import images, lock, parquet_shards, remote, sinks
from .local import Summary as _JobSummary

_loads = 0  # models opened in this process: one per actor process when the pool works as meant


@dataclass
class Summary(_JobSummary):
    # worker ("host:pid/device") -> {"loads": models opened by its process, "rows": inputs}
    workers: dict = field(default_factory=dict)


def require_ray():
    """The ray module, with Ray Data (an extra of Ray's own); MissingDependencyError naming
    fexport's ray extra when either is missing."""
    require("ray.data", "--engine ray (Ray Data)")
    return require("ray", "--engine ray (Ray Data)")


@contextlib.contextmanager
def session(address=None, **init_options):
    """Connect to the Ray cluster at `address` ("auto", "ray://head:10001"; None: $RAY_ADDRESS
    or a local cluster started here) unless Ray is already connected; disconnect on exit only
    from a connection made here."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    _connect(ray, address, init_options)
    try:
        yield ray
    finally:
        ray.shutdown()


def _connect(ray, address, init_options) -> None:
    starts_local = address is None and not os.environ.get("RAY_ADDRESS")
    if starts_local:
        init_options = {"include_dashboard": False, **init_options}
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 **init_options)
    except UnicodeError as exc:  # Ray sends the process's command line to the cluster as UTF-8
        raise EngineError("Ray cannot start from a command line that holds a file name that is "
                          "not UTF-8; name its folder instead") from exc
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
        raise EngineError(f"cannot connect to Ray at {where} ({_first_line(exc)}); start a "
                          "cluster with `ray start --head`, or leave --address out to start "
                          "a local one") from exc
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run INFO lines are noise


@dataclass
class _Pool:
    workers: int = 1
    gpus: float = 0  # per worker
    options: dict = field(default_factory=dict)  # FeatureExtractor's keyword arguments

    @property
    def cpus(self) -> int:
        # One onnxruntime thread per reserved CPU, so that actors sharing a node do not fight.
        return int(self.options.get("threads") or 1)


def extract_dataset(dataset, model, *, batch_size=32, num_workers=1, num_gpus_per_worker=0,
                    **options):
    """Map a Ray Dataset of images to features with a pool of `num_workers` actors.

    Rows need a "path" column (a local path or URI, read when no other column holds the image)
    and may carry the image as "bytes" (encoded, as `ray.data.read_binary_files` gives) or
    "image" (one image's array, in the model input's layout or HWC, as FeatureExtractor reads
    arrays). The result has path, features (list<float32>, null when the input
    failed) and error (the one-line reason, null when it loaded). `options` are
    FeatureExtractor's: device, threads, input_size, resample, keep_aspect, exif, workers.
    """
    ray = require_ray()
    data, _ = _checked_model(model, options)
    pool = _Pool(num_workers, num_gpus_per_worker, options)
    return _features(ray, dataset, data, batch_size, pool).drop_columns(["worker", "loads"])


def extract_to_parquet(model, inputs, output, *, batch_size=32, on_error="skip",
                       overwrite=False, num_workers=1, num_gpus_per_worker=0,
                       rows_per_shard=None, on_progress=None, **options) -> Summary:
    """Features of `inputs` (paths, folders, URIs of files or folders) into Parquet shards.

    `output` (a local path or URI ending in .parquet) becomes a folder of shards with columns
    path and features, rows in input order across shards sorted by name; failures go to
    `<output stem>.failures.tsv` as with the local engine. `on_error` is "skip" or "raise".
    `on_progress(count)` is called with the inputs of each finished shard.
    """
    ray = require_ray()
    check_arguments(output, on_error, num_workers)
    keys = inputs if isinstance(inputs, Inputs) else list_inputs(inputs)
    data, width = _checked_model(model, options)
    pool = _Pool(num_workers, num_gpus_per_worker, options)
    with _output_lock(output), parquet_shards.staged(output, overwrite) as folder:
        features = _features(ray, _dataset(ray, keys), data, batch_size, pool)
        # Writers reserve no CPU (the actors hold them all) and are as many as the actors:
        # unbounded zero-CPU tasks would each start a new worker process.
        reports = features.map_batches(
            parquet_shards.write_shard, fn_kwargs={"folder": folder, "width": width},
            batch_format="pyarrow", num_cpus=0,
            batch_size=rows_per_shard or max(batch_size, parquet_shards.rows_per_group(width)),
            compute=ray.data.TaskPoolStrategy(size=int(num_workers)))
        summary = _collect(ray, reports, keys, on_error, on_progress or (lambda count: None))
    summary.total, summary.row_shape = len(keys), (width,)
    summary.written = [output] + parquet_shards.write_failures(output, summary.failures)
    return summary


def _output_lock(output):
    """A local output folder gets the local engine's lock; a URI's store has no flock."""
    return contextlib.nullcontext() if remote.is_uri(output) else lock.exclusive(output)


class Inputs(list):
    """Input keys already listed: extract_to_parquet takes them as they are, without asking a
    remote filesystem about each again."""


def list_inputs(inputs) -> Inputs:
    """The input keys: local folders expanded as the local engine does, folder URIs listed."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    keys = []
    for item in map(str, inputs):
        keys += remote.list_images(item) if remote.is_uri(item) else images.expand_inputs(item)
    if not keys:
        raise images.nothing_found(inputs)
    return Inputs(str(key) for key in keys)


def check_arguments(output, on_error, num_workers) -> None:
    """Refuse what no run could do, before anything starts."""
    check_on_error(on_error)
    if not str(output).lower().endswith(".parquet"):
        raise UsageError(f"output {output}: --engine ray writes a folder of Parquet shards; "
                         "name it NAME.parquet")
    if int(num_workers) < 1:
        raise UsageError(f"num_workers must be at least 1, not {num_workers}")
    sinks.check_output("shards.parquet")  # pyarrow present, or the install hint


def _checked_model(model, options):
    """The model's bytes and feature width. Opening it here first gives the local engine's
    error for a bad model file before a single worker starts."""
    check = {**options, "device": "cpu", "threads": 1}
    if remote.is_uri(model):
        data = remote.read_bytes(model, ModelNotFoundError)
        return data, open_extractor(data, check).feature_dim
    extractor = FeatureExtractor(model, **check)
    return Path(model).read_bytes(), extractor.feature_dim


def open_extractor(data: bytes, options) -> FeatureExtractor:
    """A FeatureExtractor on a model given as bytes; onnxruntime reads the file whole, so the
    temporary copy is deleted as soon as the session is open."""
    with tempfile.TemporaryDirectory(prefix="fexport-model-") as folder:
        path = os.path.join(folder, "model.onnx")
        Path(path).write_bytes(data)
        extractor = FeatureExtractor(path, **options)
    global _loads
    _loads += 1
    return extractor


def _dataset(ray, keys):
    # Arrow strings must be UTF-8 and POSIX names need not be: "path" is the name as the local
    # engine's Parquet spells it, "file" the name's bytes, to open it by.
    dataset = ray.data.from_items([{"index": i, "path": sinks.utf8(key), "file": os.fsencode(key)}
                                   for i, key in enumerate(keys)])
    dataset.context.execution_options.preserve_order = True  # rows and failures in input order
    dataset.context.enable_progress_bars = False  # the CLI draws its own; a library prints not
    dataset.context.raise_original_map_exception = True  # a worker's FexportError as itself
    return dataset


def _features(ray, dataset, data, batch_size, pool):
    options = {**pool.options, "threads": pool.cpus}
    return dataset.map_batches(
        _Extractor, fn_constructor_kwargs={"model": [ray.put(data)], "options": options},
        compute=ray.data.ActorPoolStrategy(size=int(pool.workers)), batch_size=batch_size,
        batch_format="numpy", num_cpus=pool.cpus, num_gpus=pool.gpus or None)


class _Extractor:
    """One actor of the pool: the model opened once, then every batch it is handed."""

    def __init__(self, model, options):
        import ray

        # The reference is wrapped in a list so that Ray hands it over unresolved: the bytes
        # are fetched here, once, and dropped once the session is open.
        self.error = None
        try:
            self.extractor = open_extractor(ray.get(model[0]), options)
        except FexportError as exc:
            # An actor that dies in its constructor reaches the driver as text, and Ray
            # restarts it forever; raised from the first call, the error arrives as itself.
            self.error = exc
            return
        self.worker = f"{socket.gethostname()}:{os.getpid()}/{self.extractor.device}"
        self.pool = ThreadPoolExecutor(self.extractor.workers, thread_name_prefix="fexport-load")

    def __call__(self, batch):
        if self.error:
            raise self.error
        keys = [str(key) for key in batch["path"]]
        sources = _sources(batch, keys)
        loaded = list(self.pool.map(self._load, keys, sources))
        good = [i for i, (array, _) in enumerate(loaded) if array is not None]
        features = self.extractor.predict([loaded[i][0] for i in good]) if good else \
            np.zeros((0, self.extractor.feature_dim), np.float32)
        errors = [error for _, error in loaded]
        rows = features.reshape(len(features), int(np.prod(features.shape[1:])))
        return _table(batch, keys, good, rows, errors, (self.worker, _loads))

    def _load(self, key, source):
        """(pixels, None), or (None, the one-line reason, naming the input by its key)."""
        try:
            if remote.is_uri(source):
                source = remote.read_bytes(source)
            return images.load(source, self.extractor.load_options), None
        except ImageError as exc:
            return None, _named(str(exc), source, key)


def _sources(batch, keys) -> list:
    """What to load for each row: the image when the row carries it, else its file."""
    for column in ("bytes", "image"):
        if column in batch:
            return list(batch[column])
    return [os.fsdecode(name) for name in batch["file"]] if "file" in batch else keys


def _named(reason, source, key) -> str:
    """The loader names bytes "<bytes>" and arrays by shape: name them by their row's key."""
    anonymous = images.describe(source)
    return key + reason[len(anonymous):] if reason.startswith(anonymous + ":") else reason


def _table(batch, keys, good, features, errors, worker):
    """The batch as Arrow: features as list<float32> (the local Parquet schema), null where the
    input failed, and the worker that made the rows."""
    import pyarrow as pa

    counts = np.zeros(len(keys), np.int64)
    counts[good] = features.shape[1]
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    values = pa.array(np.ascontiguousarray(features, "<f4").reshape(-1), pa.float32())
    failed = pa.array([error is not None for error in errors])
    columns = {"path": pa.array(keys, pa.string()),
               "features": pa.ListArray.from_arrays(offsets, values, mask=failed),
               "error": pa.array([error and sinks.utf8(error) for error in errors],
                                 pa.string()),
               "worker": pa.array([worker[0]] * len(keys), pa.string()),
               "loads": pa.array([worker[1]] * len(keys), pa.int64())}
    if "index" in batch:
        columns["index"] = pa.array(batch["index"], pa.int64())
    return pa.table(columns)


def _collect(ray, reports, keys, on_error, on_progress) -> Summary:
    """Read the shard reports in input order; stop at the first failure when raising."""
    summary = Summary(total=0, extracted=0)
    # Closed on the way out, so that a run stopped at a bad input stops its workers too.
    with contextlib.closing(iter(reports.iter_rows())) as rows:
        try:
            for report in rows:
                on_progress(_add(summary, report, keys, on_error))
        except ray.exceptions.RayError as exc:
            raise _engine_error(exc) from exc
    return summary


def _add(summary, report, keys, on_error) -> int:
    """Count one shard's report into the summary; the number of inputs it covered."""
    failures = [_failure(keys[index], reason) for index, reason
                in zip(report["failed_index"], report["failed_reason"])]
    if failures and on_error == "raise":
        raise ImageError(failures[0][1])
    summary.extracted += report["rows"]
    summary.failures += failures
    _count_workers(summary.workers, report)
    return report["rows"] + len(failures)


def _failure(key, reason):
    """(key, reason) as the local engine words it: the name as it is, not as Arrow holds it."""
    shown = sinks.utf8(key)
    return key, key + reason[len(shown):] if reason.startswith(shown) else reason


def _count_workers(workers, report) -> None:
    for worker, loads, rows in zip(report["worker"], report["loads"], report["worker_rows"]):
        seen = workers.setdefault(worker, {"loads": 0, "rows": 0})
        seen["loads"], seen["rows"] = max(seen["loads"], loads), seen["rows"] + rows


def _engine_error(exc) -> FexportError:
    """fexport's own error when a worker raised one (a bad model, no CUDA...), else one line."""
    import ray

    chain = [exc]
    while len(chain) < 8 and (getattr(chain[-1], "cause", None) or chain[-1].__cause__):
        chain.append(getattr(chain[-1], "cause", None) or chain[-1].__cause__)
    own = [c for c in chain if isinstance(c, FexportError)
           and not isinstance(c, ray.exceptions.RayError)]  # Ray's copies carry tracebacks
    if own:
        return own[0]
    root = chain[-1]  # the worker's own exception, under Ray's wrappers
    return EngineError(f"the Ray job failed: {type(root).__name__}: {_first_line(root)}")


def _first_line(exc) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


