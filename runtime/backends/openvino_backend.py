"""The OpenVINO backend (CPU): the same ONNX files, compiled by OpenVINO's CPU plugin.

OpenVINO picks its own inference precision: on a CPU with bf16 in hardware (AMX, AVX-512 BF16)
its default is bf16. fexport always states the precision it wants (`INFERENCE_PRECISION_HINT`)
and then reads back, from the compiled model's runtime graph, the precisions its kernels really
run in: fp32 must mean fp32, bf16 must be asked for, and an INT8 file must run INT8 kernels.
Imported only when used (the `openvino` extra).
"""

from __future__ import annotations

import threading

import numpy as np

from fexport.errors import DeviceError, FexportError, whole_sentences
from fexport.extras import require

from .base import Backend, Ran, TensorInfo

NAME = "openvino"
# The precision fexport asks for: float parts of an INT8 or FP16 file stay in float32, as when
# their quality was measured, except in an int8-bf16 variant, which was judged with them in bf16.
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32", "fp16": "f32", "int8-bf16": "bf16"}
# For the claim to be true, the runtime graph must hold kernels of each kind the precision names.
KERNELS = {"int8": {"i8", "u8"}, "bf16": {"bf16"}}
NEEDS = {"bf16": ("bf16",), "int8": ("int8",), "int8-bf16": ("int8", "bf16")}
TYPE_NAMES = {"f32": "tensor(float)", "u8": "tensor(uint8)"}


class OpenVinoBackend(Backend):
    def __init__(self, path, threads=None, precision="fp32"):
        ov = require("openvino", "backend='openvino'")
        self.compiled = _compile(ov, path, threads, precision)
        self.ran = Ran(NAME, "cpu", _check_precision(self.compiled, precision))
        self.inputs = [_info(port) for port in self.compiled.inputs]
        self.outputs = [_info(port) for port in self.compiled.outputs]
        self._requests = threading.local()  # an infer request serves one thread at a time

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()

    def bare_call(self):
        request = self.compiled.create_infer_request()

        def infer(batch):
            request.infer({0: batch})
            return request.get_output_tensor(0).data.copy()
        return infer


def _compile(ov, path, threads, precision):
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        core = ov.Core()
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # OpenVINO raises its own untyped errors for files it cannot read
        raise FexportError(f"{path}: OpenVINO cannot compile it for the CPU "
                           f"({whole_sentences(str(exc).strip().splitlines()[0])}); use "
                           "backend='onnxruntime'") from exc


def runtime_precisions(compiled) -> set[str]:
    """The precisions the compiled model's kernels run in ("f32", "bf16", "i8", ...)."""
    found = set()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            found.add(info["runtimePrecision"].astype(str))
    return found


def _check_precision(compiled, precision) -> str:
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    kernels = runtime_precisions(compiled)
    if precision == "fp32" and ("float32" not in hint or "bf16" in kernels or "f16" in kernels):
        raise DeviceError(f"asked OpenVINO for float32 but it compiled for {hint} "
                          f"(kernels {sorted(kernels)}); use backend='onnxruntime'")
    for kind in (k for k in NEEDS.get(precision, ()) if not KERNELS[k] & kernels):
        raise DeviceError(f"asked OpenVINO for {precision} but no kernel runs in {kind} "
                          f"(kernels {sorted(kernels)}): {_why_not(precision, kind)}")
    return precision


def _why_not(precision, kind) -> str:
    if precision == "int8-bf16" and kind == "bf16":
        return ("OpenVINO left nothing of this INT8 file in float for bf16 to run; use the "
                "plain INT8 variant (fexport quantize without --bf16)")
    return "this CPU or this file does not allow it; open the float32 file instead"


def _info(port) -> TensorInfo:
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    element = port.get_element_type().get_type_name()
    return TensorInfo(port.get_any_name(), TYPE_NAMES.get(element, element), shape)
