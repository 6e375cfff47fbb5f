"""The timing core behind `fexport bench` and `optimize`: named calls timed in turns, in one
process, and the machine they ran on. Lean: numpy, and ONNX Runtime only for its version.

Vocabulary as in onnxruntime_perf_test and trtexec: first-run latency (the first call, which pays
for allocations), then latency percentiles over the timed calls and throughput in images/s (from
the median call). Runners take turns round by round, so machine drift (turbo, other load) hits
every runtime alike.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fexport.runtime import host

PERCENTILES = (50, 90, 95, 99)
# Untimed pause before each timed call when several runtimes take turns: the one that just ran
# leaves its worker threads spinning (Eigen's in TensorFlow, ONNX Runtime's own) for a while, and
# on a 2-core machine they would steal the cores from the next runtime's timed call.
SETTLE_S = 0.05
# Each turn runs one runner back to back for this long (at least one call), every call timed,
# the same time for every runner: a call of a tiny model right after the pause times the
# engine's thread wake-up, not the model (the VWW MobileNet on OpenVINO at batch 8: 2.4 ms a
# call after a pause, 0.82 ms back to back, and the runner that followed a run of the same
# file won by 10% on a warm cache).
TURN_S = 0.1


@dataclass
class Runner:
    """What is timed: a named call from a batch of pixels to features."""

    name: str
    call: Callable[[np.ndarray], object]  # float32 NHWC RGB pixels 0..255 -> features


def random_pixels(contract, batch) -> np.ndarray:
    spec = contract.input
    shape = (batch, spec.height, spec.width, spec.channels)
    return np.random.default_rng(batch).integers(0, 256, shape).astype(np.float32)


def bench_batch(runners, pixels, warmup, iters, duration) -> list[dict]:
    """One row per runner. Each round (iteration) gives every runner a turn of back-to-back
    calls, each timed: enough to fill TURN_S when runners take turns, else one."""
    first = {r.name: _timed(lambda r=r: r.call(pixels)) for r in runners}
    for _ in range(warmup):
        for runner in runners:
            runner.call(pixels)
    latencies, rounds = {r.name: [] for r in runners}, 0
    for rounds, _ in enumerate(_rounds(iters, duration), 1):
        for runner in runners:
            if len(runners) > 1:
                time.sleep(SETTLE_S)
            latencies[runner.name] += _turn(runner, pixels, len(runners) > 1)
    return [{"runtime": r.name, **summarize(len(pixels), first[r.name], latencies[r.name]),
             "iterations": rounds, "calls_per_round": len(latencies[r.name]) / rounds}
            for r in runners]


def _turn(runner, pixels, taking_turns) -> list[float]:
    """One call's time; with runners taking turns, calls back to back until TURN_S is full."""
    times, spent = [], 0.0
    while not times or (taking_turns and spent < TURN_S):
        times.append(_timed(lambda: runner.call(pixels)))
        spent += times[-1]
    return times


def _rounds(iters, duration):
    if duration:
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            yield
    else:
        yield from range(iters)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def summarize(batch, first_s, latencies) -> dict:
    ms = np.asarray(latencies) * 1e3
    row = {"batch": batch, "first_run_ms": first_s * 1e3,
           "mean_ms": float(ms.mean())}
    row.update({f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES})
    row["images_per_s"] = batch / (float(np.median(ms)) / 1e3)
    return row


def peak_rss_mib() -> float:
    """This process image's peak resident memory (VmHWM). ru_maxrss is the fallback off Linux:
    on Linux it also counts the parent's memory, carried across the fork and exec."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(call, repeats: int, min_seconds: float = 0.0) -> float:
    """The fastest of `repeats` timed calls, or of as many more as fill `min_seconds`, in
    seconds, after one untimed call (allocations, thread start-up)."""
    call()
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def machine() -> dict:
    from fexport.runtime.backends.onnxruntime_backend import onnxruntime

    ort = onnxruntime()
    return {"cpu": host.cpu_name(), "cpu_flags": host.precision_flags(),
            "cores": len(os.sched_getaffinity(0)), "gpu": _gpu(),
            "load_average_1min": os.getloadavg()[0],
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(), **_versions()}


def _versions() -> dict:
    found = {}
    for name in ("numpy", "pillow", "tensorflow", "keras", "tf2onnx", "onnx", "openvino"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _gpu() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,"
                           "noheader"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() or None
