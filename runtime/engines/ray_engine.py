"""Feature extraction on Ray Data, for collections that outgrow one machine.

    paths or URIs --Ray Dataset--> actor pool, one FeatureExtractor per actor (ray_workers.py)
        --> shard writers: OUT.parquet/part-<first input>.parquet (+ OUT.failures.tsv)

Called through `engines.extract_to_file(..., engine="ray")`, with the local engine's settings
and Summary. Modes: "new" (an existing output is refused), "overwrite", and, for a local
output, "resume": the shards are built in OUT.parquet.parts/, each committed by its record
(parquet_shards.ShardFolder), so an interrupted run (the driver killed, the cluster gone)
continues with the inputs no record covers, and no row is written twice. Ray itself retries a
task whose worker died (`max_retries`) and restarts the actor (`max_restarts`).

The driver opens the model once to check it (so a bad model fails as with the local engine,
before any worker starts), then puts its bytes in the object store: every actor fetches them
once, opens one FeatureExtractor and keeps it for all the batches it is given, so workers need
no shared filesystem for the model. The features are the local engine's, bit for bit
(tests/test_ray.py compares them).

The Dataset keeps its input order, so the shards sorted by name hold the local engine's rows in
the same order, and the first failure the driver meets is the first bad input in that order:
on_error="fail" stops there and nothing is kept, like the local engine.

Ray is imported only when a function here runs; without it, the error names the extra to install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from fexport.errors import EngineError, FexportError, ImageError, ModelNotFoundError, UsageError
from fexport.extras import require

from ..extractor import FeatureExtractor
from ..files import images, lock, parquet_shards, remote, sinks
from ..files.inputs import expand
from ..on_error import FAIL
from . import ray_resume, resume
from .base import Run, Summary, check_options, open_model
from .ray_workers import Extractor, open_extractor

# extract_to_file's own options, beside FeatureExtractor's.
RAY_OPTIONS = ("address", "num_workers", "num_gpus_per_worker", "rows_per_shard")
# Faults, set on purpose rather than left to Ray's defaults. An actor whose process dies (a
# SIGKILL, the OOM killer, a lost node) is restarted and its batch given again, 3 times at most:
# a batch that kills every worker it meets stops the run instead of looping. Exceptions are
# never retried: a bad image is reported per file by the worker (it never raises for one), and
# anything a worker raises (a bad model, no CUDA, a full disk) would come back the same.
# (Ray Data's own defaults restart actors and retry their batches without end.) Ray 2.60 calls
# passing these through map_batches deprecated, with no named parameter yet, and removes the
# way in 2.64: pyproject's ray extra stops below it.
ACTOR_RETRIES = {"max_restarts": 3, "max_task_retries": 3}
WRITER_RETRIES = {"max_retries": 3, "retry_exceptions": False}


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
    rows_per_shard: int | None = None  # None: at least a Parquet row group's worth

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
    FeatureExtractor's: device, threads, input_size, resample, keep_aspect, exif, workers,
    decode_quality.
    """
    ray = require_ray()
    data, _ = _checked_model(model, options)
    pool = _Pool(num_workers, num_gpus_per_worker, options)
    return _features(ray, dataset, data, batch_size, pool).drop_columns(["worker", "loads"])


def check(output, run: Run, options) -> None:
    """Refuse what no run could do, before anything starts."""
    if run.mode == "resume" and remote.is_uri(output):
        raise UsageError(f"mode 'resume' (--resume) needs a local output folder; {output} is "
                         "in an object store, where shards cannot be committed by a rename: "
                         "start again with mode 'overwrite' (--overwrite)")
    check_options(options, "ray", RAY_OPTIONS)
    if not str(output).lower().endswith(".parquet"):
        raise UsageError(f"output {output}: --engine ray writes a folder of Parquet shards; "
                         "name it NAME.parquet")
    if int(options.get("num_workers", 1)) < 1:
        raise UsageError(f"num_workers must be at least 1, not {options['num_workers']}")
    sinks.check_output("shards.parquet")  # pyarrow present, or the install hint


def extract_to_file(extractor_or_path, inputs, output, run: Run, *, address=None,
                    num_workers=1, num_gpus_per_worker=0, rows_per_shard=None,
                    **extractor_options) -> Summary:
    """Features of `inputs` (paths, folders, URIs of files or folders) into Parquet shards.

    `output` (a local path or URI ending in .parquet) becomes a folder of shards with columns
    path and features, rows in input order across shards sorted by name; failures go to
    `<output stem>.failures.tsv` as with the local engine. Runs on the cluster at `address`
    (see `session`), or on the one this process is connected to already. `run.on_progress` is
    called with the inputs of each finished shard.
    """
    started = time.perf_counter()
    keys = _keys(expand(inputs, uris=True))
    data, width, options = _model(extractor_or_path, extractor_options)
    pool = _Pool(num_workers, num_gpus_per_worker, options, rows_per_shard)
    with session(address) as ray:
        summary = _run(ray, keys, output, (data, width), pool, run)
    summary.total, summary.row_shape = len(keys), (width,)
    summary.written = [output] + parquet_shards.write_failures(output, summary.failures)
    summary.ran = _describe_workers(summary.ray_workers)
    summary.seconds = time.perf_counter() - started
    return summary


def _run(ray, keys, output, model, pool, run) -> Summary:
    """The run itself, on a connected Ray; `model` is (its bytes, its feature width)."""
    with _output_lock(output):
        if remote.is_uri(output):
            with parquet_shards.staged(output, run.mode == "overwrite") as folder:
                return _extract(ray, range(len(keys)), keys, folder, model, pool, run)
        return _resumable(ray, keys, output, model, pool, run)


def _resumable(ray, keys, output, model, pool, run) -> Summary:
    """A local output: built in its ShardFolder, continued from its records on "resume"."""
    folder = parquet_shards.ShardFolder(output)
    outputs = [str(output), parquet_shards.failures_path(output)]
    ident = ray_resume.identity(model[0], keys, pool.options, pool.rows_per_shard, run)
    resume.prepare(folder, run.mode, ident, keys, ray_resume.SETTINGS, outputs)
    done = folder.committed()  # none for a fresh run
    summary = ray_resume.summary_of(done, keys, run.on_error, folder)
    todo = ray_resume.not_covered(done, len(keys))
    if done:
        run.progress(len(keys) - len(todo))
    if todo:
        ray_resume.merge(summary, _extract(ray, todo, keys, str(folder.path), model, pool,
                                           run), keys)
    summary.resumed = len(keys) - len(todo)
    folder.finish(len(keys))
    return summary


def _extract(ray, indices, keys, folder, model, pool, run) -> Summary:
    data, width = model
    features = _features(ray, _dataset(ray, keys, indices), data, run.batch_size, pool)
    # Writers reserve no CPU (the actors hold them all) and are as many as the actors:
    # unbounded zero-CPU tasks would each start a new worker process.
    reports = _map_batches(
        features, parquet_shards.write_shard, fn_kwargs={"folder": folder, "width": width},
        batch_format="pyarrow", num_cpus=0,
        batch_size=pool.rows_per_shard or max(run.batch_size,
                                              parquet_shards.rows_per_group(width)),
        compute=ray.data.TaskPoolStrategy(size=int(pool.workers)), **WRITER_RETRIES)
    return _collect(ray, reports, keys, run)


def _output_lock(output):
    """A local output folder gets the local engine's lock; a URI's store has no flock."""
    return contextlib.nullcontext() if remote.is_uri(output) else lock.exclusive(output)


def _keys(items) -> list[str]:
    """The items as the file names or URIs the workers read; in-memory images are refused."""
    in_memory = [item for item in items if not isinstance(item, (str, os.PathLike))]
    if in_memory:
        raise UsageError(f"{images.describe(in_memory[0])}: --engine ray reads image files "
                         "and URIs, not images in memory; use the local engine, or "
                         "ray_engine.extract_dataset on a Dataset with an \"image\" or "
                         "\"bytes\" column")
    return [str(item) for item in items]


def _model(extractor_or_path, extractor_options):
    """(the model's bytes, its feature width, the options every actor opens it with)."""
    if isinstance(extractor_or_path, FeatureExtractor):
        extractor = open_model(extractor_or_path, extractor_options)
        return Path(extractor.path).read_bytes(), extractor.feature_dim, extractor.options
    data, width = _checked_model(extractor_or_path, extractor_options)
    return data, width, extractor_options


def _checked_model(model, options):
    """The model's bytes and feature width. Opening it here first gives the local engine's
    error for a bad model file before a single worker starts."""
    check = {**options, "device": "cpu", "threads": 1}
    if remote.is_uri(model):
        data = remote.read_bytes(model, ModelNotFoundError)
        return data, open_extractor(data, check).feature_dim
    extractor = FeatureExtractor(model, **check)
    return Path(model).read_bytes(), extractor.feature_dim


def _dataset(ray, keys, indices):
    # Arrow strings must be UTF-8 and POSIX names need not be: "path" is the name as the local
    # engine's Parquet spells it, "file" the name's bytes, to open it by.
    dataset = ray.data.from_items([{"index": i, "path": sinks.utf8(keys[i]),
                                    "file": os.fsencode(keys[i])} for i in indices])
    dataset.context.execution_options.preserve_order = True  # rows and failures in input order
    dataset.context.enable_progress_bars = False  # the CLI draws its own; a library prints not
    dataset.context.raise_original_map_exception = True  # a worker's FexportError as itself
    return dataset


def _features(ray, dataset, data, batch_size, pool):
    options = {**pool.options, "threads": pool.cpus}
    return _map_batches(
        dataset, Extractor, fn_constructor_kwargs={"model": [ray.put(data)], "options": options},
        compute=ray.data.ActorPoolStrategy(size=int(pool.workers)), batch_size=batch_size,
        batch_format="numpy", num_cpus=pool.cpus, num_gpus=pool.gpus or None,
        **ACTOR_RETRIES)


def _map_batches(dataset, fn, **options):
    """Dataset.map_batches, without Ray 2.60's warning about the retry settings passed through
    it (ACTOR_RETRIES: set on purpose, and the only way there is before 2.64)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return dataset.map_batches(fn, **options)


def _collect(ray, reports, keys, run: Run) -> Summary:
    """Read the shard reports in input order; stop at the first failure with on_error "fail"."""
    summary = Summary(total=0, extracted=0, engine="ray", ray_workers={})
    # Closed on the way out, so that a run stopped at a bad input stops its workers too.
    with contextlib.closing(iter(reports.iter_rows())) as rows:
        try:
            for report in rows:
                run.progress(_add(summary, report, keys, run.on_error))
        except ray.exceptions.RayError as exc:
            raise _engine_error(exc) from exc
    return summary


def _add(summary, report, keys, on_error) -> int:
    """Count one shard's report into the summary; the number of inputs it covered."""
    failures = [ray_resume.failure(keys[index], reason) for index, reason
                in zip(report["failed_index"], report["failed_reason"])]
    if failures and on_error == FAIL:
        raise ImageError(failures[0][1])
    summary.extracted += report["rows"]
    summary.failures += failures
    _count_workers(summary.ray_workers, report)
    return report["rows"] + len(failures)


def _count_workers(workers, report) -> None:
    for worker, loads, rows in zip(report["worker"], report["loads"], report["worker_rows"]):
        seen = workers.setdefault(worker, {"loads": 0, "rows": 0})
        seen["loads"], seen["rows"] = max(seen["loads"], loads), seen["rows"] + rows


def _describe_workers(workers) -> str:
    """"cpu, 2 Ray workers": the devices the workers ran on, and how many there were."""
    devices = sorted({worker.rsplit("/", 1)[-1] for worker in workers})
    return f"{'/'.join(devices)}, {len(workers)} Ray worker{'s' * (len(workers) != 1)}"


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


