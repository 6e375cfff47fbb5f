"""The heavy half of fexport: Keras model -> verified ONNX (+ SavedModel) feature extractor.

Only this package imports TensorFlow, Keras, tf2onnx and onnx.
"""

import contextlib
import os

from fexport.extras import require

# TensorFlow's C++ logs (CUDA probing, oneDNN notices) would bury fexport's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; without it
# (an AVX2-only AMD EPYC, measured) Conv2D has no channels-first kernel on the CPU, and every
# channels-first model fails to run in Keras ("only supports the NHWC tensor format"). Asking
# for oneDNN makes it run on any x86 CPU. It takes effect only before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow 2.21 logs through absl before TF_CPP_MIN_LOG_LEVEL is read; hide fd 2 while
    it loads (Python exceptions still propagate; FEXPORT_DEBUG=1 shows everything)."""
    if os.environ.get("FEXPORT_DEBUG") == "1":
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _native_stderr_silenced():
    require("tensorflow", "exporting a Keras model (export, layers, verify, bench "
                          "--compare-keras)")

from .export import ExportOptions, ExportResult, export  # noqa: E402

__all__ = ["ExportOptions", "ExportResult", "export"]
