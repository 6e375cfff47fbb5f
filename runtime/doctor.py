"""What this install can do: the extras present and missing, onnxruntime's build and providers,
where each CUDA library loaded from (or why it did not), the CPU, and package versions.

Works on a bare install (no extra): that is when a user most needs to be told what is missing.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
from dataclasses import asdict, dataclass, field

from fexport import extras

from . import host
from .backends import tensorrt_provider

# TensorRT: what ONNX Runtime's TensorRT provider needs (TensorRT 10, as onnxruntime-gpu 1.2x-1.3x
# is built against); without it the provider is listed but does not load (issue #27).
CUDA_LIBRARIES = (("CUDA runtime", ("libcudart.so.13", "libcudart.so.12")),
                  ("cuBLAS", ("libcublas.so.13", "libcublas.so.12")),
                  ("cuDNN", ("libcudnn.so.9",)),
                  ("TensorRT", ("libnvinfer.so.10",)))
PACKAGES = ("fexport", "numpy", "pillow", "onnxruntime", "onnxruntime-gpu", "openvino", "onnx",
            "sympy", "tensorflow", "keras", "tf_keras", "tf2onnx", "scikit-learn", "pyarrow",
            "ray", "nvidia-nvimgcodec-cu13")


@dataclass
class ExtraStatus:
    name: str
    adds: str
    missing: list[str]  # its packages that cannot be imported; empty: installed


@dataclass
class Report:
    extras: list[ExtraStatus]
    onnxruntime: dict | None  # version, build, providers; None without a runtime extra
    cuda_libraries: dict  # label -> "loads from PATH" or why it does not
    cpu: dict
    packages: dict = field(default_factory=dict)  # distribution -> version or None
    gpu_decode: dict = field(default_factory=dict)  # nvImageCodec: imports, version, CUDA

    def to_dict(self) -> dict:
        return asdict(self)


def report() -> Report:
    ort = _onnxruntime()
    return Report(
        extras=[ExtraStatus(e.name, e.adds, missing) for e, missing in extras.status()],
        onnxruntime=None if ort is None else {
            "version": ort.__version__, "build": ort.get_device(),
            "providers": ort.get_available_providers()},
        cuda_libraries=_cuda_libraries(ort),
        cpu={"name": host.cpu_name(), "flags": host.precision_flags(),
             "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))},
        packages={name: _version(name) for name in PACKAGES}, gpu_decode=gpu_decode())


def gpu_decode() -> dict:
    """Whether nvImageCodec (decode="gpu") imports, its version and the CUDA it was built for,
    or why not; looked up without importing it where it is not installed (a bare install)."""
    from . import gpu_decode as gpu

    if not extras.installed(gpu.MODULE):
        return {"imports": False, "state": "not installed: "
                f"{extras.install_command(gpu.EXTRA)}"}
    try:
        module = gpu.nvimgcodec()
    except Exception as exc:  # noqa: BLE001 - a broken install: say why, as for CUDA's libraries
        return {"imports": False, "state": f"does not import: {exc}"}
    return {"imports": True, "version": getattr(module, "__version__", None),
            "cuda": getattr(module, "__cuda_version__", None),
            "state": f"imports, version {getattr(module, '__version__', '?')}"}


def _onnxruntime():
    try:
        return extras.require("onnxruntime", "doctor")
    except extras.MissingDependencyError:
        return None


def _cuda_libraries(ort) -> dict:
    if ort is not None and hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21 finds the
        try:                                              # nvidia-* wheels of the gpu extra
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - the per-library checks below say what is missing
            pass
    try:  # as a TensorRT session does, so that the line names the wheel's copy
        tensorrt_provider.preload()
    except OSError:
        pass  # the check below loads it again by name and says why not
    found = {label: _load_first(names) for label, names in CUDA_LIBRARIES}
    if found["TensorRT"].startswith("not found"):
        found["TensorRT"] += f"; device tensorrt needs it: {tensorrt_provider.FIX}"
    return found


def _load_first(names) -> str:
    errors = []
    for name in names:
        try:
            ctypes.CDLL(name)
            return f"loads from {loaded_from(name) or name}"
        except OSError as exc:
            errors.append(str(exc))
    return "not found: " + "; ".join(errors)


def loaded_from(name) -> str | None:
    """The file this process mapped for the shared library `name` (Linux), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split(None, 5)[-1].strip() for line in maps if "/" in line]
    except OSError:
        return None
    return next((p for p in paths if os.path.basename(p).startswith(name)), None)


def _version(name) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
