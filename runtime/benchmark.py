"""`fexport bench`: an exported model at several batch sizes, its runtimes timed in turns
(runtime/timing.py): ONNX Runtime, the file's variants, every backend with --backends all, and,
given `reference_runners` (exporter/keras_side.py), Keras on the same cut model.
Lean without them: numpy and an engine only.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from fexport.runtime.backends import BF16_PRECISIONS
from fexport.runtime.backends import onnxruntime_backend as sessions
from fexport.runtime.contract import read_contract, stored_contract, to_model_input
from fexport.runtime.extractor import FeatureExtractor
from fexport.runtime.files import images
from fexport.runtime.timing import Runner, bench_batch, machine, peak_rss_mib, random_pixels

ONNXRUNTIME = "onnxruntime"
BACKENDS = ("onnxruntime", "openvino")
# `fexport bench`'s defaults, which its options show: the CPU unless asked (a GPU host's numbers
# are another run), a few untimed calls to settle allocations, then 20 timed rounds.
DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_DEVICE = "cpu"
DEFAULT_WARMUP = 3
DEFAULT_ITERS = 20


def bench_model(path, batch_sizes=DEFAULT_BATCH_SIZES, device=DEFAULT_DEVICE, threads=None,
                warmup=DEFAULT_WARMUP, iters=DEFAULT_ITERS, duration=None, input_size=None,
                reference_runners=None, image_paths=(), variants=(), all_backends=False) -> dict:
    """Time `path` at each batch size; a JSON-ready dict with the machine it ran on.

    `variants`: other ONNX files of the same model (an INT8 or FP16 one) timed alongside.
    `all_backends`: also every backend that can run each file, as fexport calls it and as the
    backend's bare API does, named by what really ran ("fexport openvino cpu bf16").
    `reference_runners`: contract -> more runners, e.g. exporter.keras_side.keras_runners."""
    start = time.perf_counter()
    session = sessions.open_session(path, device, threads)
    created_s = time.perf_counter() - start
    contract = contract_of(path, device, input_size)
    skipped = []
    runners = [onnx_runner(session, contract),
               *_other_runners(path, variants, (device, threads, input_size),
                               skipped if all_backends else None)]
    if reference_runners is not None:
        runners += reference_runners(contract)
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
    contract, call = extractor.contract, extractor.engine.bare_call()
    return Runner(f"bare {extractor.ran}", lambda pixels: call(to_model_input(contract, pixels)))



def bench_images(extractor, paths, batch, warmup, iters, duration) -> list[dict]:
    """Decode + resize alone, and the whole extraction (decode, resize, inference)."""
    chunk = [paths[i % len(paths)] for i in range(batch)]
    options = extractor.load_options
    runners = [Runner("decode+resize", lambda _: [images.load(p, options) for p in chunk]),
               Runner("end-to-end", lambda _: extractor.extract(chunk, batch_size=batch))]
    return bench_batch(runners, np.zeros((batch, 1, 1, 1), np.float32), warmup, iters, duration)
