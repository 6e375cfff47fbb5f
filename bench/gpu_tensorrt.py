"""The GPU suite's TensorRT part, through fexport's own device "tensorrt": the FP16 variant and a
percentile INT8 file, each judged against float32 on the real photos where it runs, timed in the
suite's rounds, with the engine build and the cached start timed apart; and GPU utilisation
sampled while a timed run goes (`GpuSampler`).

Only where ONNX Runtime's TensorRT provider loads (`fexport[tensorrt]`); elsewhere the suite says
why in "Not timed".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from fexport.runtime import backends, timing
from fexport.runtime.extractor import FeatureExtractor
from fexport.runtime.timing import Runner

SAMPLE_S = 0.1  # nvidia-smi answers in tens of milliseconds: ten samples a second
SMI_TIMEOUT_S = 2.0  # one query; a hung driver ends the sampling, not the suite
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-i", "0"]


def variants(fp32: Path, fp16: Path, photos: Path, workdir: Path) -> dict[str, Path]:
    """The files TensorRT builds from: the verified FP16 variant and an INT8 (QDQ) file."""
    if reason := backends.tensorrt_unavailable():
        raise RuntimeError(reason)  # the suite lists it under "Not timed"
    return {"fp16": fp16, "int8": int8_variant(fp32, photos, workdir)}


def int8_variant(fp32: Path, photos: Path, workdir: Path) -> Path:
    from fexport.errors import VerificationError
    from fexport.precision.quantize import QuantizeOptions, quantize

    paths = sorted(map(str, photos.iterdir()))
    output = workdir / f"{fp32.stem}.int8.onnx"
    with contextlib.suppress(VerificationError):  # judged on TensorRT below, where it runs
        quantize(QuantizeOptions(model=str(fp32), output=str(output), precision="int8",
                                 calibration_images=paths, samples=len(paths),
                                 evaluation_images=paths))
    return output


def report(files: dict[str, Path], fp32: Path, photos: Path, workdir: Path) -> dict:
    """For each file: the engine build (first start, empty cache), the cached start, and its
    features against float32 on the CPU."""
    from fexport.comparison import max_rel, row_cosines

    paths = sorted(map(str, photos.iterdir()))[:8]
    expected = FeatureExtractor(fp32, "cpu").extract(paths, batch_size=8)
    found = {}
    for precision, path in files.items():
        build_s, cached_s, features = _starts(path, workdir / f"trt-cache-{precision}", paths)
        found[precision] = {"build_s": build_s, "cached_start_s": cached_s,
                            "min_cosine": float(row_cosines(expected, features).min()),
                            "max_rel": max_rel(expected, features)}
    return found


def _starts(path: Path, cache: Path, paths: list[str]) -> tuple[float, float, object]:
    """Seconds to a first batch with an empty engine cache, then with the engine cached (a new
    session in the same process reads it), and the features of the second."""
    shutil.rmtree(cache, ignore_errors=True)
    with _environment("FEXPORT_CACHE_DIR", str(cache)):
        build_s, _ = _first_batch(path, paths)
        cached_s, features = _first_batch(path, paths)
    return build_s, cached_s, features


def _first_batch(path, paths) -> tuple[float, object]:
    start = time.perf_counter()
    features = FeatureExtractor(path, "tensorrt").extract(paths, batch_size=len(paths))
    return time.perf_counter() - start, features


@contextlib.contextmanager
def _environment(name, value):
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def runners(files: dict[str, Path]) -> list[Runner]:
    """fexport's call on each TensorRT engine, warmed at batch 2 so a failure shows here."""
    found = []
    for path in files.values():
        extractor = FeatureExtractor(path, "tensorrt")
        extractor.predict(timing.random_pixels(extractor.contract, 2))
        found.append(Runner(f"fexport {extractor.ran}", extractor.predict))
    return found


class GpuSampler:
    """GPU 0's utilisation (percent) every SAMPLE_S while the block runs: pynvml where it is
    installed, else nvidia-smi, each query bounded by SMI_TIMEOUT_S."""

    def __init__(self):
        self.samples: list[float] = []
        self.source, self.error = None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fexport-gpu-util")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=SMI_TIMEOUT_S + 1)

    def _loop(self):
        try:
            query = self._query()
            while not self._stop.wait(SAMPLE_S):
                self.samples.append(query())
        except Exception as exc:  # noqa: BLE001 - no GPU, no nvidia-smi: said in the summary
            self.error = f"{type(exc).__name__}: {exc}"[:200]

    def _query(self):
        try:
            import pynvml
        except ImportError:
            self.source = "nvidia-smi"
            return lambda: float(subprocess.run(SMI_QUERY, capture_output=True, text=True,
                                                timeout=SMI_TIMEOUT_S, check=True)
                                 .stdout.split()[0])
        pynvml.nvmlInit()
        handle, self.source = pynvml.nvmlDeviceGetHandleByIndex(0), "pynvml"
        return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0, "source": self.source, "error": self.error}
        return {"samples": len(self.samples), "source": self.source, "error": self.error,
                "mean_percent": sum(self.samples) / len(self.samples),
                "max_percent": max(self.samples)}


def markdown_lines(found: dict) -> list[str]:
    lines = []
    for precision, row in found.items():
        lines.append(f"TensorRT {precision}: engine built in {row['build_s']:.1f} s, cached "
                     f"start {row['cached_start_s']:.1f} s; against float32 on 8 real photos "
                     f"min cosine {row['min_cosine']:.5f}, max rel {row['max_rel']:.2e}.")
    return lines
