"""Feature extraction on Ray Data, for collections that outgrow one machine.

    paths or URIs --listed as they are read into a Parquet file (files/listing.py)-->
        Ray Dataset, a block at a time --> actor pool, one FeatureExtractor per actor
        (ray_workers.py) --> shard writers: OUT.parquet/part-F-L.parquet (+ OUT.failures.tsv)

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
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from fexport.errors import EngineError, FexportError, ModelNotFoundError, UsageError
from fexport.extras import require

from ..extractor import FeatureExtractor
from ..files import images, listing, lock, parquet_shards, remote, sinks
from ..files.inputs import iter_items
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
    features = _features(ray, dataset, data, batch_size, pool)
    return features.drop_columns(["worker", "loads", "restarted", "node"])


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
    (see `session`), or on the one this process is connected to already. The inputs are
    listed as they are read, into a file beside the shards (files/listing.py), never held
    whole in memory; `run.on_listed` is called with their number, then `run.on_progress` with
    the inputs of each finished shard.
    """
    started = time.perf_counter()
    data, width, options = _model(extractor_or_path, extractor_options)
    pool = _Pool(num_workers, num_gpus_per_worker, options, rows_per_shard)
    with session(address) as ray:
        summary = _run(ray, inputs, output, (data, width), pool, run)
    summary.row_shape = (width,)
    summary.written = [output] + parquet_shards.write_failures(output, summary.failures)
    summary.ran = _describe_workers(summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _run(ray, inputs, output, model, pool, run) -> Summary:
    """The run itself, on a connected Ray; `model` is (its bytes, its feature width)."""
    with _output_lock(output):
        if not remote.is_uri(output):
            return _resumable(ray, inputs, output, model, pool, run)
        with parquet_shards.staged(output, run.mode == "overwrite") as folder, \
                tempfile.TemporaryDirectory(prefix="fexport-inputs-") as spool:
            inputs = _listed(inputs, os.path.join(spool, "inputs.parquet"), run)
            return _extract(ray, inputs, [], folder, model, pool, run).summary(inputs.count, 0)


def _resumable(ray, inputs, output, model, pool, run) -> Summary:
    """A local output: built in its ShardFolder, continued from its records on "resume"."""
    folder = parquet_shards.ShardFolder(output)
    outputs = [str(output), parquet_shards.failures_path(output)]
    try:
        listing = _listed(inputs, folder.spool_path, run)
        ident = ray_resume.identity(model[0], listing, pool.options, pool.rows_per_shard, run)
        resume.prepare(folder, run.mode, ident, listing, ray_resume.SETTINGS, outputs)
    finally:
        with contextlib.suppress(FileNotFoundError):  # moved into the folder, or compared
            os.unlink(folder.spool_path)
    records = folder.committed()  # none for a fresh run
    tally, done = ray_resume.Tally(), ray_resume.covered(records)
    tally.add_records(records, run.on_error, folder)
    resumed = ray_resume.count(done)
    if resumed:
        run.progress(resumed)
    if resumed < listing.count:
        _extract(ray, folder.listing(), done, str(folder.path), model, pool, run, tally)
    folder.finish(listing.count)
    return tally.summary(listing.count, resumed)


def _listed(inputs, path, run) -> listing.Listing:
    """The inputs spooled to `path` as they are listed; UsageError when there are none."""
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    found = listing.spool(_keys(iter_items(given, uris=True)), path)
    if not found.count:
        raise images.nothing_found(given if isinstance(given, (list, tuple)) else [])
    run.listed(found.count)
    return found


def _extract(ray, inputs, done, folder, model, pool, run, tally=None):
    """Extract the inputs of the listing `inputs` outside the `done` ranges into `folder`."""
    data, width = model
    rows = _block_rows(inputs.count, run.batch_size, pool.workers)
    features = _features(ray, _dataset(ray, inputs, done, rows), data, run.batch_size, pool)
    # Writers reserve no CPU (the actors hold them all) and are as many as the actors:
    # unbounded zero-CPU tasks would each start a new worker process.
    reports = _map_batches(
        features, parquet_shards.write_shard, fn_kwargs={"folder": folder, "width": width},
        batch_format="pyarrow", num_cpus=0,
        batch_size=pool.rows_per_shard or max(run.batch_size,
                                              parquet_shards.rows_per_group(width)),
        compute=ray.data.TaskPoolStrategy(size=int(pool.workers)), **WRITER_RETRIES)
    return _collect(ray, reports, run, tally or ray_resume.Tally())


def _output_lock(output):
    """A local output folder gets the local engine's lock; a URI's store has no flock."""
    return contextlib.nullcontext() if remote.is_uri(output) else lock.exclusive(output)


def _keys(items):
    """The items as the file names or URIs the workers read; in-memory images are refused."""
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise UsageError(f"{images.describe(item)}: --engine ray reads image files and "
                             "URIs, not images in memory; use the local engine, or "
                             "ray_engine.extract_dataset on a Dataset with an \"image\" or "
                             "\"bytes\" column")
        yield str(item)


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


def _dataset(ray, inputs, done, rows):
    """The listing's rows (index, path, file: see files/listing.py) outside the `done` ranges,
    put in the object store a block of `rows` at a time (it spills to disk), so the driver
    holds one. Not read_parquet: its planning task wants a CPU, and the actors may hold all."""
    blocks = [ray.put(table.slice(start, rows)) for group in inputs.tables()
              for table in [_drop_done(group, done) if done else group]
              for start in range(0, table.num_rows, rows)]
    dataset = ray.data.from_arrow_refs(blocks)
    dataset.context.execution_options.preserve_order = True  # rows and failures in input order
    dataset.context.enable_progress_bars = False  # the CLI draws its own; a library prints not
    dataset.context.raise_original_map_exception = True  # a worker's FexportError as itself
    return dataset


def _block_rows(count, batch_size, workers) -> int:
    """Rows per Dataset block: Ray gives a block to one actor, so a small run is cut into
    blocks enough for every actor to get 4, and a large one into blocks of 4096 names (about
    600 KB: objects under 100 KB would be kept in the driver's own memory, not the store)."""
    return max(batch_size, min(4096, -(-count // (4 * workers))))


def _drop_done(table, done):
    """`table`'s rows whose index no (first, last) range in `done` holds."""
    import numpy as np

    firsts, lasts = np.array(done).T
    index = table["index"].to_numpy()
    at = np.searchsorted(firsts, index, side="right") - 1
    inside = (at >= 0) & (index <= lasts[np.maximum(at, 0)])
    return table.filter(~inside)


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


def _collect(ray, reports, run: Run, tally):
    """Read the shard reports in input order into `tally`; stop at the first failure with
    on_error "fail"."""
    # Closed on the way out, so that a run stopped at a bad input stops its workers too.
    with contextlib.closing(iter(reports.iter_rows())) as rows:
        try:
            for report in rows:
                run.progress(tally.add_report(report, run.on_error))
        except ray.exceptions.RayError as exc:
            raise _engine_error(exc) from exc
    return tally


def _describe_workers(summary) -> str:
    """"cpu, 2 Ray workers on 1 node, 1 restart": the devices the workers ran on, and how
    many workers, nodes and restarts there were."""
    workers = summary.ray_workers
    if not workers:  # a resume of a run whose every shard had been committed
        return "no Ray worker: every input was done"
    devices = sorted({worker.rsplit("/", 1)[-1] for worker in workers})
    restarts = f", {summary.retries} restart{'s' * (summary.retries != 1)}" \
        if summary.retries else ""
    return (f"{'/'.join(devices)}, {len(workers)} Ray worker{'s' * (len(workers) != 1)} on "
            f"{summary.ray_nodes} node{'s' * (summary.ray_nodes != 1)}{restarts}")


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


