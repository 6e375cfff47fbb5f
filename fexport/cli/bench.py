"""`fexport bench`: latency and throughput of an exported model with onnxruntime."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .options import Device, InputSize, Threads


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench)


def bench(
    model_file: Annotated[str, typer.Argument(help="ONNX file.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated, e.g. 1,8,32.")] = "1,8",
    device: Device = "cpu",
    threads: Threads = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per batch size.")] = 3,
    iters: Annotated[int, typer.Option(min=1, help="Timed runs per batch size.")] = 20,
    duration: Annotated[Optional[float], typer.Option(
        help="Time each batch size for this many seconds instead of --iters.")] = None,
    input_size: InputSize = None,
    json_file: Annotated[Optional[str], typer.Option("--json", help="Write results here.")]
    = None,
):
    """Latency percentiles, throughput, first-run latency and session creation time."""
    from fexport.bench.core import bench_model
    from fexport.errors import UsageError
    from fexport.runtime import atomic

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError as exc:
        raise UsageError(f"--batch-sizes {batch_sizes!r}: expected integers like 1,8,32") from exc
    result = bench_model(model_file, sizes, device, threads, warmup, iters, duration,
                         input_size)
    typer.echo(f"{result['model']} on {result['provider']} ({result['machine']['cpu']}, "
               f"{result['machine']['cores']} cores): session created in "
               f"{result['session_creation_s'] * 1e3:.0f} ms")
    typer.echo(f"{'batch':>5} {'first ms':>9} {'p50 ms':>8} {'p90 ms':>8} {'p95 ms':>8} "
               f"{'p99 ms':>8} {'images/s':>9}")
    for r in result["results"]:
        typer.echo(f"{r['batch']:>5} {r['first_run_ms']:>9.1f} {r['p50_ms']:>8.1f} "
                   f"{r['p90_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                   f"{r['images_per_s']:>9.1f}")
    typer.echo(f"peak resident memory {result['peak_rss_mib']:.0f} MiB")
    if json_file:
        atomic.write_bytes(json_file, json.dumps(result, indent=1).encode())
