"""The timing core behind `fexport bench`: one onnxruntime model, several batch sizes.

Vocabulary as in onnxruntime_perf_test and trtexec: session creation time, first-run latency
(the first inference, which pays for allocations), then latency percentiles over the timed
iterations and throughput in images/s. Lean: numpy and onnxruntime only.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np

from fexport.runtime import session as sessions
from fexport.runtime.extractor import read_contract, to_model_input

PERCENTILES = (50, 90, 95, 99)


def bench_model(path, batch_sizes=(1, 8), device="cpu", threads=None, warmup=3, iters=20,
                duration=None, input_size=None) -> dict:
    """Time `path` at each batch size; a JSON-ready dict with the machine it ran on."""
    start = time.perf_counter()
    session = sessions.open_session(path, device, threads)
    created_s = time.perf_counter() - start
    contract = read_contract(session, path, input_size)
    runs = [_bench_batch(session, contract, n, warmup, iters, duration) for n in batch_sizes]
    return {"model": str(path), "provider": session.get_providers()[0],
            "session_creation_s": created_s, "threads": threads, "results": runs,
            "peak_rss_mib": peak_rss_mib(), "machine": machine()}


def _bench_batch(session, contract, batch, warmup, iters, duration) -> dict:
    spec = contract.input
    pixels = np.random.default_rng(batch).integers(
        0, 256, (batch, spec.height, spec.width, spec.channels)).astype(np.float32)
    feed = {spec.name: to_model_input(contract, pixels)}
    outputs = [contract.output_name]
    first = _timed(lambda: session.run(outputs, feed))
    for _ in range(warmup):
        session.run(outputs, feed)
    latencies = _timed_loop(lambda: session.run(outputs, feed), iters, duration)
    return summarize(batch, first, latencies)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _timed_loop(call, iters, duration) -> list[float]:
    latencies, deadline = [], time.perf_counter() + duration if duration else None
    while (deadline and time.perf_counter() < deadline) or (not deadline and
                                                            len(latencies) < iters):
        latencies.append(_timed(call))
    return latencies


def summarize(batch, first_s, latencies) -> dict:
    ms = np.asarray(latencies) * 1e3
    row = {"batch": batch, "iterations": len(ms), "first_run_ms": first_s * 1e3,
           "mean_ms": float(ms.mean())}
    row.update({f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES})
    row["images_per_s"] = batch / (float(np.median(ms)) / 1e3)
    return row


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    import onnxruntime as ort

    return {"cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
