"""The serving suite: `fexport serve` under 1, 8 and 32 concurrent clients, with dynamic
batching on (--max-batch-size 32) and off (1), beside in-process `extract` at the same batch
size, decoding included on both sides, in one run.

    python -m fexport.bench.serve            # ResNet50 avg (random weights), ResNet-8, VWW
    python -m fexport.bench.serve --quick    # ResNet-8 only, short cells

Requests carry one image each, as JPEG bytes or as a UINT8 pixel tensor, in the binary v2 form
tritonclient sends. Clients and server share this machine's cores; the load average is recorded
before and after, and the results are not written when it was above publish.MAX_LOAD before the run.
Results: bench/results/serve-<cpu>-<cores>cores.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from fexport.runtime import FeatureExtractor, timing
from fexport.runtime.files import images

from . import load, publish, serve_report, suite

RESULTS = suite.RESULTS
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
# ResNet50, where compute dominates; two small trained models, where the cost of each call
# weighs more: ResNet-8 (in-process, batch 32 runs 1.23x batch 1 on 2 AMD EPYC cores) and the
# VWW MobileNet (2.13x), the small model whose calls batching can amortize.
MODELS = (("ResNet50", ["resnet50", "--weights", "none", "--head", "avg"]),
          ("ResNet-8", [str(DATA / "mlcommons_tiny_cifar10_pretrainedResnet.h5"), "--layer",
                        "activation_6", "--head", "avg"]),
          ("VWW-MobileNet", [str(DATA / "mlcommons_tiny_vww_96.h5"), "--layer",
                             "activation_26", "--head", "avg", "--preprocess", "tf"]))
CONCURRENCY = (1, 8, 32)
BATCHING = (("on", 32), ("off", 1))  # --max-batch-size of each server
WARMUP_S = 1.0


def run(models, workdir, seconds) -> dict:
    photos = suite.make_image_folder(Path(workdir) / "images")
    files = [p.read_bytes() for p in sorted(photos.iterdir())]
    data = {"machine": timing.machine(), "load_before": publish.settled_load(), "seconds": seconds,
            "models": []}
    for name, export_args in models:
        onnx = Path(workdir) / f"{name}.onnx"
        suite._run_fexport(*export_args, "-o", onnx, "--overwrite")
        pixels = _pixels(onnx, files)
        data["models"].append({"model": name, "in_process": _in_process(onnx, files, pixels,
                                                                        seconds),
                               "served": _served(onnx, files, pixels, seconds)})
    data["load_after"] = os.getloadavg()[0]
    return data


def _pixels(onnx, files) -> np.ndarray:
    """The files decoded as the server decodes them, at the model's size, in its layout."""
    extractor = FeatureExtractor(onnx)
    nhwc = np.stack([images.load(f, extractor.load_options) for f in files]).astype(np.uint8)
    return images.from_nhwc(nhwc, extractor.contract.input.layout)


def _in_process(onnx, files, pixels, seconds) -> list[dict]:
    """extract() on the same inputs at batch 32 and 1: images/s over `seconds` of repeats."""
    extractor, rows = FeatureExtractor(onnx), []
    for inputs, items in (("jpeg", files), ("pixels", pixels)):
        for batch in (max(b for _, b in BATCHING), 1):
            extractor.extract(items[:batch], batch)  # warm-up
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                done += len(extractor.extract(items, batch))
            rows.append({"inputs": inputs, "batch_size": batch,
                         "images_per_s": round(done / (time.perf_counter() - started), 1)})
    return rows


def _served(onnx, files, pixels, seconds) -> list[dict]:
    requests = {"jpeg": [load.files_request([f]) for f in files],
                "pixels": [load.pixels_request(p[None]) for p in pixels]}
    rows = []
    for batching, max_batch in BATCHING:
        with _server(onnx, max_batch) as port:
            path = f"/v2/models/{onnx.stem}/infer"
            for inputs, prepared in requests.items():
                for clients in CONCURRENCY:
                    load.run(port, path, prepared, 1, clients, WARMUP_S)
                    before = _batch_counts(port)
                    result = load.run(port, path, prepared, 1, clients, seconds)
                    rows.append({"batching": batching, "inputs": inputs,
                                 "mean_batch": _mean_batch(before, _batch_counts(port)),
                                 **dataclasses.asdict(result)})
    return rows


@contextlib.contextmanager
def _server(onnx, max_batch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "fexport", "serve", str(onnx), "--port",
                             str(port), "--max-batch-size", str(max_batch)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(60)


def _wait_ready(proc, port, timeout=120) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until and proc.poll() is None:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5):
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not get ready: {proc.stderr.read().decode()[-2000:]}")


def _batch_counts(port) -> tuple[float, float]:
    """(images, batches) so far, from the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("fexport_batch_size_sum", "fexport_batch_size_count"):
            if line.startswith(name + "{"):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values.get("fexport_batch_size_sum", 0.0), values.get("fexport_batch_size_count", 0.0)


def _mean_batch(before, after) -> float:
    batches = after[1] - before[1]
    return round((after[0] - before[0]) / batches, 2) if batches else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-8 only, 2 s cells")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per cell")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--workdir", default=str(RESULTS / "work"))
    parser.add_argument("--allow-load", action="store_true",
                        help="write results even when the machine was busy (marked so)")
    args = parser.parse_args(argv)
    models, seconds = (MODELS[1:2], 2.0) if args.quick else (MODELS, args.seconds)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    data = run(models, args.workdir, seconds)
    if message := publish.refusal(data, args.allow_load):
        print(message, file=sys.stderr)
        return 1
    for path in write(data, Path(args.results)):
        print(path)
    return 0


def write(data, results: Path) -> list[Path]:
    return publish.write(data, results / publish.result_stem("serve", data["machine"]),
                         serve_report.markdown(data))


if __name__ == "__main__":
    sys.exit(main())
