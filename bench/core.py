"""The timing core behind `fexport bench`: an exported model, several batch sizes, several runtimes
timed in turn.

Vocabulary as in onnxruntime_perf_test and trtexec: session creation time, first-run latency (the
first inference, which pays for allocations), then latency percentiles over the timed calls and
throughput in images/s (from the median call). With `compare_keras`, the same cut Keras model runs
in the same process, interleaved with ONNX Runtime round by round, so machine drift (turbo, other
load) hits every runtime alike. Lean unless `compare_keras`: numpy and onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import time

import numpy as np

from fexport.runtime import host
from fexport.runtime.backends import BF16_PRECISIONS
from fexport.runtime.backends import onnxruntime_backend as sessions
from fexport.runtime.contract import read_contract, stored_contract, to_model_input
from fexport.runtime.extractor import FeatureExtractor
from fexport.runtime.files import images

from .keras_side import keras_runners  # TensorFlow loads only when it is called
from .runner import Runner

PERCENTILES = (50, 90, 95, 99)
ONNXRUNTIME = "onnxruntime"
BACKENDS = ("onnxruntime", "openvino")
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
# `fexport bench`'s defaults, which its options show: the CPU unless asked (a GPU host's numbers
# are another run), a few untimed calls to settle allocations, then 20 timed rounds.
DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_DEVICE = "cpu"
DEFAULT_WARMUP = 3
DEFAULT_ITERS = 20


def bench_model(path, batch_sizes=DEFAULT_BATCH_SIZES, device=DEFAULT_DEVICE, threads=None,
                warmup=DEFAULT_WARMUP, iters=DEFAULT_ITERS, duration=None, input_size=None,
                compare_keras=False, image_paths=(), variants=(), all_backends=False) -> dict:
    """Time `path` at each batch size; a JSON-ready dict with the machine it ran on.

    `variants`: other ONNX files of the same model (an INT8 or FP16 one) timed alongside.
    `all_backends`: also every backend that can run each file, as fexport calls it and as the
    backend's bare API does, named by what really ran ("fexport openvino cpu bf16")."""
    start = time.perf_counter()
    session = sessions.open_session(path, device, threads)
    created_s = time.perf_counter() - start
    contract = contract_of(path, device, input_size)
    skipped = []
    runners = [onnx_runner(session, contract),
               *_other_runners(path, variants, (device, threads, input_size),
                               skipped if all_backends else None)]
    if compare_keras:
        runners += keras_runners(contract)
    rows = [row for n in batch_sizes
            for row in bench_batch(runners, random_pixels(contract, n), warmup, iters, duration)]
    if image_paths:
        extractor = FeatureExtractor(path, device, threads, input_size=input_size)
        rows += [row for n in batch_sizes
                 for row in bench_images(extractor, image_paths, n, warmup, iters, duration)]
    return {"model": str(path), "provider": session.get_providers()[0],
            "session_creation_s": created_s, "threads": threads, "results": rows,
            "skipped": skipped, "profile": _profile(extractor, image_paths, max(batch_sizes))
            if image_paths else None,
            "peak_rss_mib": peak_rss_mib(), "machine": machine()}


def _profile(extractor, paths, batch) -> dict:
    """Where one extraction of the whole folder spends its time, at the largest batch."""
    stages = extractor.profile(paths, batch)
    return {"batch": batch, **dataclasses.asdict(stages), "lines": stages.lines()}


def _other_runners(path, variants, engine, skipped) -> list[Runner]:
    """The variants on ONNX Runtime; or, given a `skipped` list (--backends all), every file
    on every backend that can run it, named by what ran."""
    device, threads, input_size = engine
    if skipped is not None:
        return backend_runners([path, *variants], device, (threads, input_size), skipped)
    return [variant_runner(other, device, threads, input_size) for other in variants]


def onnx_runner(session, contract) -> Runner:
    feed_name, outputs = contract.input.name, [contract.output_name]
    return Runner(ONNXRUNTIME, lambda pixels: session.run(
        outputs, {feed_name: to_model_input(contract, pixels)}))


def variant_runner(path, device, threads, input_size) -> Runner:
    """A reduced-precision file of the same model, on ONNX Runtime where it can run it (the
    float32 row's engine), else (bf16) on the backend that can, and an optimized file on the
    backend its contract names; named by what ran."""
    contract = read_contract(path, input_size)
    backend = "auto" if contract.precision in BF16_PRECISIONS or contract.backend \
        else ONNXRUNTIME
    extractor = FeatureExtractor(path, device, threads, backend=backend, input_size=input_size)
    return Runner(f"{extractor.backend} {contract.precision}", extractor.predict)


def contract_of(path, device, input_size):
    """The file's contract; for a file without one, inferred from its input (an engine opened
    only then)."""
    return stored_contract(path) or read_contract(
        path, input_size, sessions.OnnxRuntimeBackend(path, device))


def backend_runners(paths, device, engine_options, skipped) -> list[Runner]:
    """For each file on each backend that can run it: fexport's call and the bare API.
    What cannot run here goes to `skipped`, with the reason."""
    from fexport.errors import FexportError

    threads, input_size = engine_options
    runners = []
    for path in paths:
        for backend in BACKENDS:
            try:
                extractor = FeatureExtractor(path, device, threads, backend=backend,
                                             input_size=input_size)
            except FexportError as exc:
                skipped.append({"file": str(path), "backend": backend, "reason": str(exc)})
                continue
            runners += [Runner(f"fexport {extractor.ran}", extractor.predict),
                        bare_runner(extractor)]
    return runners


def bare_runner(extractor) -> Runner:
    """The engine's own API on the same file, fed the same prepared batch."""
    contract, engine = extractor.contract, extractor.engine
    if isinstance(engine, sessions.OnnxRuntimeBackend):
        runner = onnx_runner(engine.session, contract)
        runner.name = f"bare {extractor.ran}"
        return runner
    request = engine.compiled.create_infer_request()

    def infer(pixels):
        request.infer({0: to_model_input(contract, pixels)})
        return request.get_output_tensor(0).data.copy()
    return Runner(f"bare {extractor.ran}", infer)


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


def bench_images(extractor, paths, batch, warmup, iters, duration) -> list[dict]:
    """Decode + resize alone, and the whole extraction (decode, resize, inference)."""
    chunk = [paths[i % len(paths)] for i in range(batch)]
    options = extractor.load_options
    runners = [Runner("decode+resize", lambda _: [images.load(p, options) for p in chunk]),
               Runner("end-to-end", lambda _: extractor.extract(chunk, batch_size=batch))]
    return bench_batch(runners, np.zeros((batch, 1, 1, 1), np.float32), warmup, iters, duration)


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


def result_stem(suite_name: str, machine: dict) -> str:
    """A results file's stem: the suite, the CPU, its cores and onnxruntime's version."""
    cpu = "-".join(machine["cpu"].split()[:2]).lower()
    return f"{suite_name}-{cpu}-{machine['cores']}cores-ort{machine['onnxruntime']}"


def machine() -> dict:
    ort = sessions.onnxruntime()
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
