"""Commands of the lean runtime: extract, info, doctor. No TensorFlow here."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Optional

import typer

from .options import (
    Backend,
    BatchSize,
    Device,
    InputSize,
    Json,
    Overwrite,
    Precision,
    Resume,
    Threads,
)


def register(app: typer.Typer) -> None:
    app.command(name="extract")(extract)
    app.command(name="info")(info)
    app.command(name="doctor")(doctor)


def extract(
    model_file: Annotated[str, typer.Argument(help="ONNX file exported by fexport.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders (recursive).")],
    output: Annotated[str, typer.Option("-o", "--output",
                                        help="Features: .npy, .npz, .csv or .parquet.")],
    batch_size: BatchSize = 32,
    device: Device = "auto",
    backend: Backend = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
    workers: Annotated[int, typer.Option(min=1, help="Image decoding threads.")] = 4,
    on_error: Annotated[str, typer.Option(help="skip: record bad files and go on; fail: stop.")]
    = "skip",
    input_size: InputSize = None,
    resample: Annotated[str, typer.Option(help="nearest (Keras), bilinear, bicubic, lanczos, "
                                               "box.")] = "nearest",
    keep_aspect: Annotated[bool, typer.Option(help="Center-crop to the aspect ratio first.")]
    = False,
    exif: Annotated[bool, typer.Option(help="Apply EXIF orientation.")] = False,
    resume: Resume = False,
    overwrite: Overwrite = False,
    engine: Annotated[str, typer.Option(help="local: this machine; ray: a Ray cluster (the "
                                             "ray extra), output a folder of Parquet "
                                             "shards.")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: $RAY_ADDRESS, else "
             "a local cluster).")] = None,
    num_workers: Annotated[int, typer.Option(min=1, help="Ray actors, one model each.")] = 1,
    num_gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs per Ray actor.")] = 0,
):
    """Extract features from images into one file, row i for image i; crash-safe, resumable.
    With --engine ray, into a folder of Parquet shards, on a Ray cluster."""
    from fexport.runtime import FeatureExtractor
    from fexport.runtime.engines import local as job
    from fexport.runtime.files import lock

    options = dict(device=device, threads=threads, backend=backend, precision=precision,
                   input_size=input_size, resample=resample, keep_aspect=keep_aspect, exif=exif,
                   workers=workers)
    if _engine(engine, resume, on_error) == "ray":
        pool = dict(num_workers=num_workers, num_gpus_per_worker=num_gpus_per_worker)
        return _extract_on_ray(model_file, inputs, output, (batch_size, on_error, overwrite),
                               address, pool, options)
    mode = _mode(resume, overwrite, on_error, output)
    items = _listed_inputs(inputs)
    with lock.exclusive(output):  # before the model loads: a second run refuses at once
        extractor = FeatureExtractor(model_file, **options)
        progress = _Progress(len(items))
        summary = job.extract_to_file(extractor, items, output, batch_size,
                                      "skip" if on_error == "skip" else "raise", mode,
                                      on_batch=progress.update)
        progress.close()
    _finish(summary, str(extractor.ran))


def _engine(engine, resume, on_error) -> str:
    from fexport.errors import UsageError

    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine!r}: expected local or ray")
    if engine == "ray" and resume:
        raise UsageError("--resume is for --engine local (Ray retries failed tasks itself); "
                         "rerun with --overwrite")
    if on_error not in ("skip", "fail"):
        raise UsageError(f"--on-error {on_error!r}: expected skip or fail")
    return engine


def _extract_on_ray(model_file, inputs, output, run, address, pool, options) -> None:
    """The same images, loader and features, on a Ray cluster; Parquet shards out."""
    from fexport.runtime.engines import ray_engine

    batch_size, on_error, overwrite = run
    on_error = "skip" if on_error == "skip" else "raise"
    ray_engine.check_arguments(output, on_error, pool["num_workers"])  # before Ray starts
    items = ray_engine.list_inputs(inputs)
    with ray_engine.session(address):
        progress = _Progress(len(items))
        summary = ray_engine.extract_to_parquet(
            model_file, items, output, batch_size=batch_size, overwrite=overwrite,
            on_error=on_error, on_progress=progress.update, **pool, **options)
        progress.close()
    devices = sorted({worker.rsplit("/", 1)[-1] for worker in summary.workers})
    count = len(summary.workers)
    _finish(summary, f"{'/'.join(devices)}, {count} Ray worker{'s' * (count != 1)}")


def _finish(summary, device) -> None:
    from fexport.errors import ImageError

    _report(summary, device)
    if summary.failures and not summary.extracted:
        raise ImageError(f"none of the {summary.total} inputs could be read")


def _mode(resume, overwrite, on_error, output) -> str:
    """Check the arguments that need no file opened; the job's mode."""
    from fexport.errors import UsageError
    from fexport.runtime.files import atomic, sinks

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    sinks.check_output(output)
    atomic.check_writable(output)  # before a large model is loaded for nothing
    return "resume" if resume else "overwrite" if overwrite else "new"


def _listed_inputs(inputs) -> list:
    from fexport.runtime.files.images import expand_inputs, nothing_found

    items = expand_inputs(inputs)
    if not items:
        raise nothing_found(inputs)
    return items


def _report(summary, device) -> None:
    if summary.resumed:
        typer.echo(f"resumed: {summary.resumed} of {summary.total} inputs were already done")
    shape = " x ".join(str(n) for n in (summary.extracted, *summary.row_shape))
    typer.echo(f"extracted {summary.extracted} of {summary.total} images -> "
               f"{', '.join(summary.written)} ({shape} float32, {device})")
    for key, reason in summary.failures:
        typer.echo(f"skipped {reason}" if reason.startswith(key) else f"skipped {key}: {reason}",
                   err=True)


class _Progress:
    """images done and images/s on a terminal; silent when stderr is piped."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.enabled = sys.stderr.isatty()

    def update(self, count):
        self.done += count
        if self.enabled:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            sys.stderr.write(f"\r{self.done}/{self.total} images  {rate:.1f} images/s")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def info(
    model_file: Annotated[str, typer.Argument(help="ONNX file.")],
    as_json: Json = False,
):
    """Print an ONNX file's fexport metadata, inputs and outputs."""
    from dataclasses import asdict

    from fexport.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, onnxruntime
    from fexport.runtime.contract import stored_contract

    engine = OnnxRuntimeBackend(model_file, "cpu")
    contract = stored_contract(model_file)
    data = {"file": model_file, "onnxruntime": onnxruntime().__version__,
            "inputs": [asdict(i) for i in engine.inputs],
            "outputs": [asdict(o) for o in engine.outputs],
            "contract": json.loads(contract.to_json()) if contract else None}
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    for key in ("inputs", "outputs"):
        for entry in data[key]:
            typer.echo(f"{key[:-1]:<7} {entry['name']}: {entry['type']} {entry['shape']}")
    if not contract:
        typer.echo("no fexport metadata: pass --input-size H W to use it with extract")
        return
    for key, value in sorted(data["contract"].items()):
        typer.echo(f"{key:<20} {json.dumps(value)}")


def doctor(as_json: Json = False):
    """Extras installed and missing, onnxruntime's providers, CUDA libraries and where they
    load from, CPU cores, package versions. Works without any extra."""
    from fexport.extras import install_command
    from fexport.runtime import doctor as checks

    found = checks.report()
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=1))
        return
    for extra in found.extras:
        state = "installed" if not extra.missing else \
            f"missing {', '.join(extra.missing)}: {install_command(extra.name)}"
        typer.echo(f"extra {extra.name:<9} {state}\n                adds {extra.adds}")
    ort = found.onnxruntime
    typer.echo("onnxruntime   not installed" if ort is None else
               f"onnxruntime   {ort['version']} ({ort['build']} build), providers: "
               f"{', '.join(ort['providers'])}")
    for label, state in found.cuda_libraries.items():
        typer.echo(f"{label:<13} {state}")
    typer.echo(f"cpu           {found.cpu['name']}, {found.cpu['usable_cores']} usable of "
               f"{found.cpu['logical_cores']} logical cores; "
               f"{', '.join(found.cpu['flags']) or 'no AVX-512/AMX/VNNI'}")
    for name, version in found.packages.items():
        typer.echo(f"{name:<16} {version or 'not installed'}")
