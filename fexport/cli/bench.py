"""`fexport bench`: latency and throughput of an exported model, optionally against Keras."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .options import Device, InputSize, Threads

COLUMNS = (("first ms", "first_run_ms"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"),
           ("p95 ms", "p95_ms"), ("p99 ms", "p99_ms"), ("images/s", "images_per_s"))


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
    images: Annotated[Optional[str], typer.Option(
        "--images", help="Folder of images: also time decode + resize, and extraction end to "
                         "end.")] = None,
    compare_keras: Annotated[bool, typer.Option(
        "--compare-keras", help="Also run the source Keras model (predict and a direct call), "
                                "interleaved with ONNX Runtime. Needs fexport[export].")] = False,
    variant: Annotated[Optional[list[str]], typer.Option(
        "--variant", help="Another ONNX file of the same model (e.g. MODEL.int8.onnx) to time "
                          "alongside; repeatable.")] = None,
    input_size: InputSize = None,
    json_file: Annotated[Optional[str], typer.Option("--json", help="Write results here.")]
    = None,
):
    """Latency percentiles, throughput, first-run latency and session creation time."""
    from fexport.bench.core import bench_model
    from fexport.runtime import atomic
    from fexport.runtime.images import expand_inputs

    paths = expand_inputs(images) if images else []
    result = bench_model(model_file, parse_batch_sizes(batch_sizes), device, threads, warmup,
                         iters, duration, input_size, compare_keras, paths, variant or [])
    for line in report_lines(result):
        typer.echo(line)
    if json_file:
        atomic.write_bytes(json_file, json.dumps(result, indent=1).encode())


def parse_batch_sizes(text) -> list[int]:
    from fexport.errors import UsageError

    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError as exc:
        raise UsageError(f"--batch-sizes {text!r}: expected integers like 1,8,32") from exc
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--batch-sizes {text!r}: expected positive integers like 1,8,32")
    return sizes


def report_lines(result) -> list[str]:
    m = result["machine"]
    lines = [f"{result['model']} on {result['provider']} ({m['cpu']}, {m['cores']} cores"
             f"{', ' + m['gpu'] if m.get('gpu') else ''}): session created in "
             f"{result['session_creation_s'] * 1e3:.0f} ms",
             f"{'runtime':<15} {'batch':>5} " + " ".join(f"{h:>9}" for h, _ in COLUMNS)
             + "  relative"]
    onnx = {r["batch"]: r for r in result["results"] if r["runtime"] == "onnxruntime"}
    for r in result["results"]:
        lines.append(f"{r['runtime']:<15} {r['batch']:>5} "
                     + " ".join(f"{r[key]:>9.1f}" for _, key in COLUMNS) + "  "
                     + _relative(r, onnx.get(r["batch"])))
    lines.append(f"peak resident memory {result['peak_rss_mib']:.0f} MiB")
    return lines


def _relative(row, onnx_row) -> str:
    if onnx_row is None or row["runtime"] in ("onnxruntime", "decode+resize"):
        return ""
    ratio = row["images_per_s"] / onnx_row["images_per_s"]
    if row["runtime"] == "end-to-end":
        return f"{ratio:.0%} of inference alone"
    if row["runtime"].startswith("onnxruntime "):
        return f"{ratio:.2f}x the float32 throughput"
    return f"onnxruntime {1 / ratio:.2f}x faster"
