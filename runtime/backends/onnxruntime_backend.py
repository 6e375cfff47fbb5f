"""The ONNX Runtime backend (CPU, CUDA and TensorRT), and the truth about which execution
provider a session really got.

onnxruntime silently falls back to the CPU when the CUDA or TensorRT provider cannot load (a
missing CUDA, cuDNN or TensorRT library, or the CPU-only wheel). This module asks the session
which providers it ended up with and raises or warns instead of letting a user believe they run
on the GPU. TensorRT's own part (its options, engine cache and libraries) is tensorrt_provider.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fexport.errors import DeviceError, FexportError, ModelNotFoundError, whole_sentences
from fexport.extras import require

from . import tensorrt_provider
from .base import Backend, Ran, TensorInfo
from .tensorrt_provider import TENSORRT

NAME = "onnxruntime"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
GPU_DEVICES = ("cuda", "tensorrt")
# fp32 means fp32 on the GPU too: the CUDA provider runs float32 convolutions and matrix products
# in TF32 (a 10-bit mantissa) on Ampere and later unless told not to; a faster GPU path is a
# verified FP16 variant, never a silent one.
CUDA_OPTIONS = {"use_tf32": "0"}
# FP16 convolutions in NHWC, the tensor cores' own layout (measured on an H200, batch 256, bare
# API: VGG16 block5_pool 4757 -> 5356 images/s, ResNet50 avg 6549 -> 7277). The variant is
# judged through this same path, so its quality report holds for it.
CUDA_FP16_OPTIONS = {**CUDA_OPTIONS, "prefer_nhwc": "1"}
_warned_fallback = False


class OnnxRuntimeBackend(Backend):
    def __init__(self, path, device="auto", threads=None, precision="fp32"):
        self.session = open_session(path, device, threads, precision)
        self.ran = Ran(NAME, device_of(self.session), precision)
        self.inputs = [_info(i) for i in self.session.get_inputs()]
        self.outputs = [_info(o) for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One batch. On CUDA too a plain run: IO binding with a CPU input copied the batch once
        more on the host (an H200, VGG16 FP16 at batch 256: 4360 images/s against 4757)."""
        return self.session.run([self.outputs[0].name], {self.inputs[0].name: batch})[0]

    def run_on_device(self, batch) -> np.ndarray:
        """One batch already in the device's memory (a device_batches.DeviceBatch, from
        `--decode gpu`), bound as the input by I/O binding: no copy to or from the host on the
        way in; the features come back to the host. Only for device batches: a host batch is
        faster through `run` (see there)."""
        binding = self.session.io_binding()
        binding.bind_input(self.inputs[0].name, batch.device, batch.device_id, batch.dtype,
                           [batch.filled, *batch.shape], batch.pointer())
        binding.bind_output(self.outputs[0].name, "cpu")
        self.session.run_with_iobinding(binding)
        return batch.select(binding.copy_outputs_to_cpu()[0])

    def bare_call(self):
        run, outputs, feed = self.session.run, [self.outputs[0].name], self.inputs[0].name
        return lambda batch: run(outputs, {feed: batch})


def _info(value) -> TensorInfo:
    return TensorInfo(value.name, value.type, list(value.shape))


def onnxruntime():
    """The onnxruntime module, or MissingDependencyError naming the runtime extras."""
    return require("onnxruntime", "running an ONNX model")


def cuda_available() -> bool:
    return CUDA in onnxruntime().get_available_providers()


def tensorrt_available() -> bool:
    """Whether this onnxruntime build has the TensorRT provider (it may still fail to load)."""
    return TENSORRT in onnxruntime().get_available_providers()


def tensorrt_unavailable() -> str | None:
    """Why device "tensorrt" cannot run here, or None where its provider and library load."""
    return tensorrt_provider.unavailable(onnxruntime().get_available_providers())


def cuda_options(precision) -> dict:
    return CUDA_FP16_OPTIONS if precision == "fp16" else CUDA_OPTIONS


def open_session(path, device="auto", threads=None, precision="fp32"):
    """A session on `device`; raises DeviceError when "cuda" or "tensorrt" was asked for and
    did not load."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    ort = onnxruntime()
    if device == "tensorrt":
        return _tensorrt_session(ort, path, threads, precision)
    if device == "cuda" or (device == "auto" and cuda_available()):
        cuda = cuda_options(precision)
        session = _create(ort, path, _options(ort, threads, True), [(CUDA, cuda), CPU])
        if CUDA in session.get_providers():
            return session
        _cuda_did_not_load(device)
    return _create(ort, path, _options(ort, threads, False), [CPU])


def _tensorrt_session(ort, path, threads, precision):
    """TensorRT, with CUDA for what it does not take; the wheel's TensorRT libraries loaded
    first. DeviceError, never a silent CUDA or CPU session, when TensorRT is not what ran."""
    available = ort.get_available_providers()
    if TENSORRT not in available:
        raise tensorrt_provider.not_in_build(available)
    check_model_file(path)  # before its SHA-256 names the engine cache
    try:
        tensorrt_provider.preload()
    except OSError as exc:
        raise tensorrt_provider.did_not_load(
            [], f"TensorRT's libraries did not load ({whole_sentences(exc)})") from exc
    providers = tensorrt_provider.providers(path, precision, (CUDA, cuda_options(precision)),
                                            CPU)
    session = _create(ort, path, _options(ort, threads, True), providers)
    if session.get_providers()[0] != TENSORRT:
        raise tensorrt_provider.did_not_load(session.get_providers())
    return session


def _options(ort, threads, on_cuda):
    """onnxruntime's idle threads spin after each run, on the cores that decode the next
    batch's images. On CUDA the GPU runs the model, so the pool is one thread; on CPUs the
    spinning goes too: on 2 AMD EPYC cores, ResNet-8 from 48 JPEG photos ran 698-806 images/s
    end to end without it, 553-586 with it, and the engine alone the same (4094-4643 against
    4092-4429; bench/pipeline.py)."""
    options = ort.SessionOptions()
    if threads or on_cuda:
        options.intra_op_num_threads = int(threads or 1)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _create(ort, path, options, providers):
    check_model_file(path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        reason = whole_sentences(str(exc).splitlines()[0])
        raise FexportError(f"{path}: onnxruntime cannot load it as an ONNX model ({reason}). "
                           "Re-export it with fexport, or check that the file is "
                           "complete.") from exc


def check_model_file(path) -> None:
    """Name the plain mistakes before an engine words them as protobuf errors."""
    if not os.path.exists(path):
        raise ModelNotFoundError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelNotFoundError(f"{path} is a folder; expected an .onnx file (a SavedModel "
                                 "folder is for TensorFlow Serving, not for fexport extract)")
    if os.path.getsize(path) == 0:
        raise ModelNotFoundError(f"{path}: the file is empty (0 bytes); expected an .onnx file")


def _cuda_did_not_load(device) -> None:
    global _warned_fallback
    reason = ("onnxruntime lists the CUDA provider but the session could not use it, usually "
              "because the CUDA or cuDNN libraries it needs did not load (run `fexport doctor`)")
    if device == "cuda":
        raise DeviceError(f"device 'cuda' requested but {reason}. Install onnxruntime-gpu "
                          "with matching CUDA/cuDNN, or use --device cpu.")
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(f"fexport: falling back to the CPU: {reason}.", RuntimeWarning,
                      stacklevel=3)


def device_of(session) -> str:
    return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(session.get_providers()[0], "cpu")
