"""ONNX Runtime sessions, and the truth about which execution provider they really got.

onnxruntime silently falls back to the CPU when the CUDA provider cannot load (a missing CUDA or
cuDNN library, or the CPU-only wheel). This module asks the session which providers it ended up
with and raises or warns instead of letting a user believe they run on the GPU.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fexport.errors import DeviceError, FexportError, ModelNotFoundError
from fexport.extras import require

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
_warned_fallback = False


def onnxruntime():
    """The onnxruntime module, or MissingDependencyError naming the runtime extras."""
    return require("onnxruntime", "running an ONNX model")


def open_session(path, device="auto", threads=None):
    """A session on `device`; raises DeviceError when "cuda" was asked for and did not load."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    ort = onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    wants_cuda = device == "cuda" or (device == "auto" and CUDA in ort.get_available_providers())
    providers = [CUDA, CPU] if wants_cuda else [CPU]
    session = _create(ort, path, options, providers)
    if wants_cuda and CUDA not in session.get_providers():
        _cuda_did_not_load(device)
    return session


def _create(ort, path, options, providers):
    _check_model_file(path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise FexportError(f"{path}: onnxruntime cannot load it as an ONNX model "
                           f"({str(exc).splitlines()[0][:300]}). Re-export it with fexport, "
                           "or check that the file is complete.") from exc


def _check_model_file(path) -> None:
    """Name the plain mistakes before onnxruntime words them as protobuf errors."""
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
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"


def run(session, input_name, output_name, batch: np.ndarray) -> np.ndarray:
    """Run one batch; on CUDA through IO binding so the output is copied back once."""
    if device_of(session) != "cuda":
        return session.run([output_name], {input_name: batch})[0]
    binding = session.io_binding()
    binding.bind_cpu_input(input_name, batch)
    binding.bind_output(output_name)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]
