"""TensorRT through ONNX Runtime's TensorRT provider (device "tensorrt"): the providers a session
asks for, the engine cache, the TensorRT libraries of the pip wheel, and why a session did not
get the provider.

TensorRT builds an engine for each model on its first start (minutes for a large CNN); with the
engine cache on, a later start of the same file reads the engine instead. The cache is per user
and keyed by the model file's SHA-256, so two files of one name never share an engine.

The precision is the file's own, as everywhere: a float32 file builds a float32 engine (FP16
off), an FP16 variant an FP16 one, an INT8 (QDQ) file an INT8 one from its own scales. TensorRT
never turns a float32 file into FP16 behind the user's back: FP16 is the verified FP16 variant.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from pathlib import Path

from fexport.errors import DeviceError

from ..files import digests

TENSORRT = "TensorrtExecutionProvider"
# What the provider library (libonnxruntime_providers_tensorrt.so) needs of TensorRT 10, in the
# order they depend on each other.
LIBRARIES = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")
WHEEL_PACKAGE = "tensorrt_libs"  # the tensorrt-cu13-libs / tensorrt-cu12-libs wheels' folder
CACHE_ENV = "FEXPORT_CACHE_DIR"
# Option names as onnxruntime-gpu 1.31.1's TensorRT provider library spells them (checked in
# its strings, beside onnxruntime.ai's TensorRT execution provider page).
PRECISION_OPTIONS = {"fp32": {"trt_fp16_enable": False, "trt_int8_enable": False},
                     "fp16": {"trt_fp16_enable": True, "trt_int8_enable": False},
                     "int8": {"trt_fp16_enable": False, "trt_int8_enable": True}}
INSTALL = 'pip install "fexport[tensorrt]"'
FIX = f"{INSTALL}, or use --device cuda"


def cache_root() -> Path:
    """fexport's TensorRT cache: $FEXPORT_CACHE_DIR/tensorrt, else
    $XDG_CACHE_HOME/fexport/tensorrt, else ~/.cache/fexport/tensorrt."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "tensorrt"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fexport" / "tensorrt"


def cache_folder(model_path) -> Path:
    """Where the engines built for this exact file live."""
    return cache_root() / file_sha256(model_path)


def file_sha256(path) -> str:
    stat = os.stat(path)  # re-hashed only when the file changed
    return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path, size, mtime_ns) -> str:  # size and mtime: a changed file is read again
    return digests.file_sha256(path)


def provider_options(precision: str, folder: Path) -> dict:
    """The TensorRT provider's options for a file of `precision` whose engines go in `folder`.
    The timing cache (layer timings, reusable by any model on this GPU and TensorRT) is shared
    by every file, beside their folders."""
    if precision not in PRECISION_OPTIONS:
        raise DeviceError(f"precision {precision!r} on device 'tensorrt': expected a float32, "
                          "FP16 or INT8 file; bf16 variants run on OpenVINO's CPU plugin")
    return {**PRECISION_OPTIONS[precision],
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(folder.parent / "timing")}


def providers(model_path, precision: str, cuda: tuple, cpu: str) -> list:
    """TensorRT first, CUDA (`cuda`: name and options) for the nodes TensorRT does not take,
    then the CPU."""
    return [(TENSORRT, provider_options(precision, cache_folder(model_path))), cuda, cpu]


def wheel_folder() -> Path | None:
    """The folder of TensorRT's pip wheel (tensorrt_libs), or None when it is not installed.
    Found without importing it: its own import loads libraries too."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def preload() -> list[str]:
    """Load the wheel's TensorRT libraries into this process, globally, so that onnxruntime's
    provider finds them by name: pip puts them in site-packages/tensorrt_libs, where the loader
    does not look. The paths loaded; none without the wheel (a system TensorRT loads by name).
    Raises OSError for a library that is there and does not load."""
    folder = wheel_folder()
    if folder is None:
        return []
    found = [folder / name for name in LIBRARIES if (folder / name).exists()]
    for path in found:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return [str(path) for path in found]


def unavailable(available: list[str]) -> str | None:
    """Why a TensorRT session cannot start here, given onnxruntime's `available` providers, or
    None when the provider is in the build and TensorRT's library loads (a session may still
    fail: this is the cheap check, for listing what a host can run)."""
    if TENSORRT not in available:
        return ("this onnxruntime has no TensorRT provider (the CPU build, or onnxruntime-gpu "
                f"is missing): {INSTALL}")
    try:
        preload()
        ctypes.CDLL(LIBRARIES[0])
    except OSError as exc:
        return f"{LIBRARIES[0]} does not load ({exc}); run `fexport doctor`"
    return None


def not_in_build(available: list[str]) -> DeviceError:
    return DeviceError(f"device 'tensorrt' requested but this onnxruntime has no TensorRT "
                       f"provider (it offers {', '.join(available)}): the CPU build, or "
                       f"onnxruntime-gpu is missing. Fix: {FIX}.")


def did_not_load(got: list[str], reason: str | None = None) -> DeviceError:
    why = reason or ("onnxruntime lists the TensorRT provider but the session could not use it, "
                     "usually because TensorRT 10 (libnvinfer.so.10) did not load; run "
                     "`fexport doctor` to see where it loads from")
    return DeviceError(f"device 'tensorrt' requested but {why} (the session got "
                       f"{', '.join(got)}). Fix: {FIX}.")
