"""Inference backends behind one small interface (base.Backend): ONNX Runtime (CPU, CUDA,
TensorRT) and OpenVINO (CPU), and the rule that picks one for a file, a device and a precision.

The rule, `choose`:
- precision "auto" is the file's own: float32 for an export, or the variant's (int8, fp16,
  bf16, int8-bf16) as its contract says. "fp32" is accepted for a float32 export and "bf16" for
  a bf16 variant only: bf16 runs only from a bf16 or int8-bf16 variant, whose quality against
  float32 was measured (`fexport convert --bf16`, `fexport quantize --bf16`), so a reduced
  precision is a verified choice, never a silent one.
- a file written by `fexport optimize` names the backend it won on: `auto` opens it there when
  that backend is installed and the device is not CUDA, else on ONNX Runtime with a warning.
- CUDA and TensorRT (device "tensorrt": ONNX Runtime's TensorRT provider, engines built in
  the file's own precision and cached; never "auto", whose first start would build for
  minutes): ONNX Runtime. bf16, and int8-bf16 (an INT8 file whose float parts run in bf16):
  OpenVINO, on CPUs with bf16 in hardware only (emulated bf16 is slower than float32). INT8:
  OpenVINO on CPUs with AMX or AVX-512 VNNI when it is installed, else ONNX Runtime (see
  int8_backend). float32 and FP16: ONNX Runtime, the reference the exports were verified with.
An explicit backend that cannot serve the request raises DeviceError with the reason and a fix.
"""

from __future__ import annotations

import warnings

from fexport.errors import DeviceError, UsageError
from fexport.extras import installed

from .. import host
from .base import Backend, Ran, TensorInfo
from .onnxruntime_backend import (
    DEVICES,
    GPU_DEVICES,
    check_model_file,
    cuda_available,
    tensorrt_available,
    tensorrt_unavailable,
)

BACKENDS = ("auto", "onnxruntime", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
# A contract's precision, in the words of the backends.
FILE_PRECISION = {"float32": "fp32", "bf16": "bf16", "int8": "int8", "fp16": "fp16",
                  "int8-bf16": "int8-bf16"}
# Precisions that need bf16 in hardware, on OpenVINO: bf16, and INT8 whose float parts run bf16.
BF16_PRECISIONS = ("bf16", "int8-bf16")

__all__ = ["BACKENDS", "DEVICES", "PRECISIONS", "Backend", "Ran", "TensorInfo",
           "check_model_file", "choose", "cuda_available", "open_backend", "tensorrt_available",
           "tensorrt_unavailable"]


def choose(contract_precision, backend="auto", device="auto", precision="auto",
           preferred=None) -> tuple:
    """(backend, device, precision) that will run a file whose contract says
    `contract_precision` ("float32", "int8", "fp16", "bf16") and, for an optimized file,
    `preferred` (the backend it was measured fastest on)."""
    _check_words(backend, device, precision)
    wanted = _precision(contract_precision, precision)
    if backend == "auto" and preferred:
        backend = _preferred(preferred, device)
    if wanted in BF16_PRECISIONS:
        return _bf16(backend, device, wanted)
    if backend == "openvino":
        return "openvino", "cpu", wanted
    if backend == "auto" and device not in GPU_DEVICES and wanted == "int8" \
            and int8_backend() == "openvino":
        return "openvino", "cpu", wanted
    return "onnxruntime", device, wanted


def int8_backend() -> str:
    """The faster engine for an INT8 (QDQ) file on this CPU, by a measured rule. On fexport's
    own INT8 VGG16 and ResNet50 at batch 8, OpenVINO over ONNX Runtime: 1.74x and 1.83x on an
    Intel Xeon with AMX (issue #14), 1.07x and 1.24x on an AMD EPYC with AVX-512 VNNI and no AMX
    (bench/results/engines-amd-epyc-*.md, once precision/rewrites.py let OpenVINO run every
    convolution in INT8): OpenVINO where AMX or AVX-512 VNNI is, else ONNX Runtime (CPUs with
    neither were not measured)."""
    return "openvino" if host.fast_int8() and installed("openvino") else "onnxruntime"


def _check_words(backend, device, precision) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if backend == "openvino" and device in GPU_DEVICES:
        raise DeviceError(f"backend 'openvino' runs on the CPU here; for device {device!r} use "
                          "backend='onnxruntime' (or 'auto')")


def _precision(contract_precision, precision) -> str:
    own = FILE_PRECISION[contract_precision]
    if precision in ("auto", own):
        return own
    if precision == "bf16":
        raise UsageError("bf16 runs only from a verified bf16 variant: make one with `fexport "
                         "convert MODEL.onnx --bf16 --eval-images DIR` and open MODEL.bf16.onnx")
    raise UsageError(f"this file is a {contract_precision} variant; precision {precision!r} "
                     "would need its float32 original: open that file instead")


def _preferred(preferred, device) -> str:
    if preferred == "openvino" and (device in GPU_DEVICES or not installed("openvino")):
        why = "does not run on CUDA" if device in GPU_DEVICES else "is not installed"
        warnings.warn(f"fexport: this file was optimized for OpenVINO, which {why}; "
                      "running it on ONNX Runtime (pip install \"fexport[openvino]\" to follow "
                      "the file)", RuntimeWarning, stacklevel=4)
        return "onnxruntime"
    return preferred


def _bf16(backend, device, precision) -> tuple:
    if backend == "onnxruntime" or device in GPU_DEVICES:
        raise DeviceError(f"{precision} runs on OpenVINO's CPU plugin (ONNX Runtime's CPU provider "
                          "has no bf16 convolutions); use backend='openvino', device='cpu'")
    if not host.native_bf16():
        raise DeviceError(f"this CPU has no bf16 in hardware ({host.describe()}): emulated "
                          "bf16 would be slower than float32; open the float32 file instead")
    return "openvino", "cpu", precision


def open_backend(path, contract=None, backend="auto", device="auto", precision="auto",
                 threads=None) -> Backend:
    """Open `path` (whose fexport contract is `contract`, or None) as `choose` decides; the
    backend's `ran` says what really runs."""
    name, device, precision = choose(contract.precision if contract else "float32", backend,
                                     device, precision, contract.backend if contract else None)
    if name == "openvino":
        from .openvino_backend import OpenVinoBackend

        try:
            return OpenVinoBackend(path, threads, precision)
        except DeviceError as exc:
            if backend != "auto" or precision != "int8":
                raise
            _int8_on_onnxruntime(exc)
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, device, threads, precision)


def _int8_on_onnxruntime(refusal) -> None:
    """backend "auto" chose OpenVINO for an INT8 file, which runs none of it in INT8 (NNCF's
    accuracy control can put every operation back in float): ONNX Runtime runs the file's
    QDQ nodes as written, so it opens there instead of failing."""
    warnings.warn(f"fexport: {refusal}; running it on ONNX Runtime instead", RuntimeWarning,
                  stacklevel=4)
