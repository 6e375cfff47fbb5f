"""`fexport bench`: latency and throughput of an exported model, optionally against Keras."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fexport.runtime import benchmark as core
from fexport.runtime.timing import TURN_S

from .options import Device, InputSize, Json, Threads
from .outputs import print_json, say

COLUMNS = (("first ms", "first_run_ms"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"),
           ("p95 ms", "p95_ms"), ("p99 ms", "p99_ms"), ("images/s", "images_per_s"))


def bench(
    model_file: Annotated[str, typer.Argument(help="ONNX file.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated, e.g. 1,8,32.")]
    = ",".join(map(str, core.DEFAULT_BATCH_SIZES)),
    device: Device = core.DEFAULT_DEVICE,
    threads: Threads = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per batch size.")]
    = core.DEFAULT_WARMUP,
    iters: Annotated[int, typer.Option(
        min=1, help="Timed rounds per batch size; with several runtimes, a round gives each "
                    f"about {TURN_S:g} s of back-to-back calls.")] = core.DEFAULT_ITERS,
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
    backends: Annotated[Optional[str], typer.Option(
        "--backends", help="all: also time every backend and precision this host can run, "
                           "for the file and each --variant, fexport's call beside the "
                           "backend's bare API.")] = None,
    input_size: InputSize = None,
    as_json: Json = False,
):
    """Latency percentiles, throughput, first-run latency and session creation time."""
    from fexport.runtime.files.inputs import expand

    paths = expand(images) if images else []
    result = core.bench_model(model_file, parse_batch_sizes(batch_sizes), device, threads,
                              warmup, iters, duration, input_size, _keras_runners(compare_keras),
                              paths, variant or [], _all_backends(backends))
    for line in report_lines(result):
        say(line, as_json)
    if as_json:
        print_json(result)


def _keras_runners(compare_keras: bool):
    """The Keras side of --compare-keras (TensorFlow loads only when it runs)."""
    if not compare_keras:
        return None
    from fexport.exporter.keras_side import keras_runners

    return keras_runners


def _all_backends(backends) -> bool:
    from fexport.errors import UsageError

    if backends not in (None, "all"):
        raise UsageError(f"--backends {backends!r}: the only value is all")
    return backends == "all"


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
    width = max(15, *(len(r["runtime"]) for r in result["results"]))
    lines = [f"{result['model']} on {result['provider']} ({m['cpu']}, {m['cores']} cores, "
             f"{', '.join(m.get('cpu_flags') or ['no AVX-512/AMX/VNNI'])}"
             f"{', ' + m['gpu'] if m.get('gpu') else ''}): session created in "
             f"{result['session_creation_s'] * 1e3:.0f} ms",
             f"{'runtime':<{width}} {'batch':>5} " + " ".join(f"{h:>9}" for h, _ in COLUMNS)
             + "  relative"]
    for r in result["results"]:
        same_batch = {x["runtime"]: x for x in result["results"] if x["batch"] == r["batch"]}
        lines.append(f"{r['runtime']:<{width}} {r['batch']:>5} "
                     + " ".join(f"{r[key]:>9.1f}" for _, key in COLUMNS) + "  "
                     + "; ".join(_relative(r, same_batch)))
    lines += [f"not timed: {s['file']} on {s['backend']}: {s['reason']}"
              for s in result.get("skipped", [])]
    if profile := result.get("profile"):
        lines += [f"the folder's {profile['images']} images once at batch {profile['batch']}, "
                  "where the time went:", *profile["lines"]]
    lines.append(f"peak resident memory {result['peak_rss_mib']:.0f} MiB")
    return lines


def _relative(row, rows) -> list[str]:
    """The row's throughput against onnxruntime float32, its bare API and Keras predict."""
    name, rate = row["runtime"], row["images_per_s"]
    base, keras = rows.get("onnxruntime"), rows.get("keras.predict")
    if name in ("onnxruntime", "decode+resize") or base is None:
        return []
    if name == "end-to-end":
        return [f"{rate / base['images_per_s']:.0%} of inference alone"]
    if name.startswith("keras."):
        return [f"onnxruntime {base['images_per_s'] / rate:.2f}x faster"]
    parts = [f"{rate / base['images_per_s']:.2f}x onnxruntime float32"]
    bare = rows.get("bare " + name.removeprefix("fexport "))
    if name.startswith("fexport ") and bare:
        parts.append(f"{rate / bare['images_per_s']:.2f}x its bare API")
    if keras:
        parts.append(f"{rate / keras['images_per_s']:.2f}x keras.predict")
    return parts


# The commands this module adds to the CLI, by name.
COMMANDS = {
    "bench": bench,
}
