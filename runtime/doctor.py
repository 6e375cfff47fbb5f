"""What this machine's onnxruntime can do, and why CUDA does or does not load."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os

CUDA_LIBRARIES = (("CUDA runtime", ("libcudart.so.13", "libcudart.so.12")),
                  ("cuBLAS", ("libcublas.so.13", "libcublas.so.12")),
                  ("cuDNN", ("libcudnn.so.9",)))
PACKAGES = ("fexport", "numpy", "pillow", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorflow",
            "keras", "tf_keras", "tf2onnx", "scikit-learn", "pyarrow", "ray")


def report() -> dict:
    import onnxruntime as ort

    return {
        "onnxruntime": {"version": ort.__version__, "build": ort.get_device(),
                        "providers": ort.get_available_providers()},
        "cuda_libraries": _cuda_libraries(ort),
        "cpu": {"logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))},
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _cuda_libraries(ort) -> dict:
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21 finds the nvidia-* wheels
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - the per-library checks below say what is missing
            pass
    return {label: _load_first(names) for label, names in CUDA_LIBRARIES}


def _load_first(names) -> str:
    errors = []
    for name in names:
        try:
            ctypes.CDLL(name)
            return f"loads ({name})"
        except OSError as exc:
            errors.append(str(exc))
    return "not found: " + "; ".join(errors)


def _version(name) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
