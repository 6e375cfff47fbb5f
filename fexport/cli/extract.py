"""Commands of the lean runtime: extract, info, doctor. No TensorFlow here."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Optional

import typer

from fexport.precision import decode_quality
from fexport.runtime import FeatureExtractor, extract_to_file

from .options import (
    Backend,
    BatchSize,
    DecodeQuality,
    Device,
    InputSize,
    Json,
    Overwrite,
    Precision,
    Resume,
    Threads,
    library_default,
)
from .outputs import print_json


def extract(
    model_file: Annotated[str, typer.Argument(help="ONNX file exported by fexport.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders (recursive).")],
    output: Annotated[str, typer.Option("-o", "--output",
                                        help="Features: .npy, .npz, .csv or .parquet.")],
    batch_size: BatchSize = library_default(extract_to_file, "batch_size"),
    device: Device = library_default(FeatureExtractor, "device"),
    backend: Backend = library_default(FeatureExtractor, "backend"),
    precision: Precision = library_default(FeatureExtractor, "precision"),
    threads: Threads = library_default(FeatureExtractor, "threads"),
    workers: Annotated[int, typer.Option(min=1, help="Image decoders (threads or processes).")]
    = library_default(FeatureExtractor, "workers"),
    decode: Annotated[str, typer.Option(
        help="threads, or processes: decoding past Python's GIL, for many cores feeding a GPU; "
             "or gpu: JPEGs decoded on the GPU (the gpu-decode extra; not Keras-exact, check "
             "it with fexport verify-decode --decode gpu).")]
    = library_default(FeatureExtractor, "decode"),
    decode_quality: DecodeQuality = library_default(FeatureExtractor, "decode_quality"),
    on_error: Annotated[str, typer.Option(help="skip: record bad files and go on; fail: stop.")]
    = library_default(extract_to_file, "on_error"),
    input_size: InputSize = library_default(FeatureExtractor, "input_size"),
    resample: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer reads Optional
        help="nearest, bilinear, bicubic, lanczos, box (Pillow). Default: the model's own "
             "(a KerasHub model's resize), else nearest as Keras's load_img.")]
    = library_default(FeatureExtractor, "resample"),
    keep_aspect: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--keep-aspect/--no-keep-aspect",
        help="Center-crop to the aspect ratio first. Default: the model's own, else no.")]
    = library_default(FeatureExtractor, "keep_aspect"),
    exif: Annotated[bool, typer.Option(help="Apply EXIF orientation.")]
    = library_default(FeatureExtractor, "exif"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    profile: Annotated[bool, typer.Option(
        help="Say where the time went: waiting for decoding, engine, writing; end to end "
             "against the engine alone.")] = False,
    engine: Annotated[str, typer.Option(help="local: this machine; ray: a Ray cluster (the "
                                             "ray extra), output a folder of Parquet "
                                             "shards.")]
    = library_default(extract_to_file, "engine"),
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: $RAY_ADDRESS, else "
             "a local cluster).")] = None,
    num_workers: Annotated[int, typer.Option(min=1, help="Ray actors, one model each.")] = 1,
    num_gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs per Ray actor.")] = 0,
    rows_per_shard: Annotated[Optional[int], typer.Option(
        min=1, help="Ray: inputs per Parquet shard, the unit a resumed run skips (default: "
                    "a row group's worth).")] = None,
):
    """Extract features from images into one file, row i for image i.

    Crash-safe and resumable. With --engine ray, into a folder of Parquet shards, on a Ray
    cluster."""
    from fexport.errors import UsageError
    from fexport.runtime.engines import checked_run

    extractor_options = dict(device=device, threads=threads, backend=backend,
                             precision=precision, input_size=input_size, resample=resample,
                             keep_aspect=keep_aspect, exif=exif, workers=workers,
                             decode=decode, decode_quality=decode_quality)
    ray_options = dict(address=address, num_workers=num_workers,
                       num_gpus_per_worker=num_gpus_per_worker,
                       rows_per_shard=rows_per_shard) if engine == "ray" else {}
    settings = dict(batch_size=batch_size, on_error=on_error, mode=_mode(resume, overwrite),
                    engine=engine, **ray_options)
    checked_run(output, **settings)  # before a long listing or a large model, for nothing
    if profile and engine != "local":
        raise UsageError("--profile is for the local engine; Ray's dashboard shows where a "
                         "Ray run's time goes")
    progress = _Progress()
    try:  # the engine lists the inputs (once; Ray's as it goes) and says how many there are
        summary = extract_to_file(model_file, inputs, output, on_progress=progress.update,
                                  on_listed=progress.listed, **settings, **extractor_options)
    finally:
        progress.close()
    _finish(summary)
    if profile and summary.stages is not None:
        typer.echo("\n".join(summary.stages.lines()))


def _mode(resume, overwrite) -> str:
    from fexport.errors import UsageError

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    return "resume" if resume else "overwrite" if overwrite else "new"


def _finish(summary) -> None:
    from fexport.errors import ImageError

    _report(summary)
    if summary.failures and not summary.extracted:
        raise ImageError(f"none of the {summary.total} inputs could be read")


def _report(summary) -> None:
    if summary.resumed:
        typer.echo(f"resumed: {summary.resumed} of {summary.total} inputs were already done")
    shape = " x ".join(str(n) for n in (summary.extracted, *summary.row_shape))
    typer.echo(f"extracted {summary.extracted} of {summary.total} images -> "
               f"{', '.join(summary.written)} ({shape} float32, {summary.ran}) in "
               f"{summary.seconds:.1f} s, {len(summary.failures)} failed")
    for key, reason in summary.failures:
        typer.echo(f"skipped {reason}" if reason.startswith(key) else f"skipped {key}: {reason}",
                   err=True)


class _Progress:
    """images done and images/s on a terminal; silent when stderr is piped."""

    def __init__(self):
        self.total, self.done, self.start = "?", 0, time.perf_counter()
        self.enabled = sys.stderr.isatty()

    def listed(self, total):
        self.total = total

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
        print_json(data)
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
    """Show what this install can do: extras, providers, CUDA libraries, CPU, versions.

    Lists the extras installed and missing, onnxruntime's providers, the CUDA libraries and
    where they load from, the CPU's cores and flags, and package versions. Works without any
    extra."""
    from fexport.extras import install_command
    from fexport.runtime import doctor as checks

    found = checks.report()
    if as_json:
        print_json(found.to_dict())
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
    typer.echo(f"nvImageCodec  {found.gpu_decode['state']} (--decode gpu)")
    typer.echo(f"cpu           {found.cpu['name']}, {found.cpu['usable_cores']} usable of "
               f"{found.cpu['logical_cores']} logical cores; "
               f"{', '.join(found.cpu['flags']) or 'no AVX-512/AMX/VNNI'}")
    for name, version in found.packages.items():
        typer.echo(f"{name:<16} {version or 'not installed'}")


def verify_decode(
    model_file: Annotated[str, typer.Argument(help="ONNX file exported by fexport.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders (at least 7).")],
    min_cosine: Annotated[float, typer.Option(
        "--min-cosine", help="Fail below this per-image cosine of fast to exact decoding.")]
    = library_default(decode_quality.compare, "min_cosine"),
    batch_size: BatchSize = library_default(extract_to_file, "batch_size"),
    device: Device = library_default(FeatureExtractor, "device"),
    backend: Backend = library_default(FeatureExtractor, "backend"),
    threads: Threads = library_default(FeatureExtractor, "threads"),
    decode: Annotated[str, typer.Option(
        help="The decoding compared with exact: fast (--decode-quality fast) or gpu (--decode "
             "gpu, where it runs).")] = library_default(decode_quality.compare, "candidate"),
    as_json: Json = False,
):
    """Compare fast (or GPU) decoding with exact on your images: feature cosine and speed.

    --decode fast is --decode-quality fast; --decode gpu is extract's --decode gpu. Exits 1
    when the lowest cosine is under --min-cosine."""
    from fexport.errors import VerificationError

    found = decode_quality.compare(model_file, inputs, batch_size=batch_size, device=device,
                                   backend=backend, threads=threads, min_cosine=min_cosine,
                                   candidate=decode)
    if as_json:
        print_json(found.to_dict())
    else:
        typer.echo("\n".join(found.lines()))
    if not found.passed:
        raise VerificationError(f"{decode} decoding gave min cosine {found.min_cosine:.5f} to "
                                f"exact, under {found.min_cosine_required:g}: keep "
                                f"{KEEP_EXACT.get(decode, 'exact decoding')} for this model "
                                "and these images")


# What verify-decode's failure tells one to keep, by the decoding it compared.
KEEP_EXACT = {"fast": "--decode-quality exact", "gpu": "--decode threads or processes"}
# The commands this module adds to the CLI, by name.
COMMANDS = {
    "extract": extract,
    "verify-decode": verify_decode,
    "info": info,
    "doctor": doctor,
}
