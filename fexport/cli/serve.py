"""`fexport serve` (the feature service) and `fexport triton` (a Triton model repository)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Optional

import typer

from fexport.runtime import FeatureExtractor
from fexport.serve.config import ServeConfig

from .options import (
    Backend,
    DecodeQuality,
    Device,
    Precision,
    ReplaceOutputs,
    Threads,
    library_default,
)
from .outputs import say

DEFAULTS = ServeConfig()


def serve(
    model_files: Annotated[list[str], typer.Argument(help="ONNX files exported by fexport.")],
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine "
                                           "only; 0.0.0.0 to listen on every interface).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    name: Annotated[Optional[list[str]], typer.Option(
        "--name", help="A model's name in URLs (default: the file's stem); one per model.")]
    = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Images per batch at most.")]
    = DEFAULTS.max_batch_size,
    max_delay_ms: Annotated[float, typer.Option(
        min=0, help="How long the oldest image waits for its batch to fill.")]
    = DEFAULTS.max_delay * 1000,
    max_queue: Annotated[int, typer.Option(
        min=1, help="Images admitted and not yet computed, per model; past it, 429.")]
    = DEFAULTS.max_queue,
    max_body_mb: Annotated[float, typer.Option(min=0, help="Largest request body (MiB).")]
    = DEFAULTS.max_body_bytes / 2**20,
    request_timeout: Annotated[float, typer.Option(
        min=0, help="Seconds a request may wait for its batch; past it, 504.")]
    = DEFAULTS.request_timeout,
    workers: Annotated[int, typer.Option(min=1, help="Image-decoding threads.")]
    = DEFAULTS.decode_workers,
    decode_quality: DecodeQuality = library_default(FeatureExtractor, "decode_quality"),
    device: Device = library_default(FeatureExtractor, "device"),
    backend: Backend = library_default(FeatureExtractor, "backend"),
    precision: Precision = library_default(FeatureExtractor, "precision"),
    threads: Threads = library_default(FeatureExtractor, "threads"),
    engine: Annotated[str, typer.Option(help="local: this process; ray: a Ray Serve "
                                             "deployment (the ray extra).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster (--engine ray): auto or HOST:PORT (default: $RAY_ADDRESS, else a "
             "local cluster).")] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas (--engine ray).")]
    = 1,
):
    """Serve features over HTTP: Open Inference Protocol v2, /v1/embeddings, /metrics."""
    from fexport.serve import local

    config = ServeConfig(max_batch_size=max_batch_size, max_delay=max_delay_ms / 1000,
                         max_queue=max_queue, max_body_bytes=int(max_body_mb * 2**20),
                         request_timeout=request_timeout, decode_workers=workers)
    options = dict(device=device, backend=backend, precision=precision, threads=threads,
                   decode_quality=decode_quality)
    names = local.model_names(model_files, name)
    # uvicorn re-raises the SIGTERM it handled once it has drained; this handler takes it, so
    # a drained server exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if engine == "ray":
        _serve_on_ray(model_files, names, config, options, host=host, port=port,
                      address=address, replicas=replicas)
        return
    models = local.open_models(model_files, names, **options)
    say(f"fexport: serving {', '.join(names)} at http://{host}:{port}", as_json=True)
    local.run(models, config, host, port)


def _serve_on_ray(model_files, names, config, options, **where):
    """Deploy, then wait for SIGTERM or SIGINT, and take the deployment down."""
    from fexport.serve import ray_serve

    stopped = threading.Event()
    service = ray_serve.start(model_files, names, config, options, **where)
    # After ray.init, which installs its own SIGTERM handler (sys.exit(15)): a signal now takes
    # the deployment down and exits 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    say(f"fexport: serving {', '.join(names)} on Ray Serve at {service.url}")
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        service.close()


def triton(
    model_file: Annotated[str, typer.Argument(help="ONNX file exported by fexport.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The model repository folder.")],
    name: Annotated[Optional[str], typer.Option(help="Model name (default: the file's stem).")]
    = None,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 32,
    instances: Annotated[int, typer.Option(min=1, help="Model instances (instance_group).")]
    = 1,
    gpu: Annotated[bool, typer.Option(help="Run the instances on GPUs (KIND_GPU).")] = False,
    tensorrt_fp16: Annotated[bool, typer.Option(
        help="With --gpu: let Triton run it through TensorRT in FP16.")] = False,
    overwrite: ReplaceOutputs = False,
):
    """Write a Triton Inference Server model repository for an fexport ONNX file."""
    from fexport.serve import triton as triton_repository

    written = triton_repository.write_repository(
        model_file, output, name=name, max_batch_size=max_batch_size, instances=instances,
        gpu=gpu, tensorrt_fp16=tensorrt_fp16, overwrite=overwrite)
    say(f"wrote {written.config_path} and {written.model_path}")


COMMANDS = {"serve": serve, "triton": triton}
