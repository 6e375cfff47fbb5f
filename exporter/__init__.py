"""The heavy half of fexport: Keras model -> verified ONNX (+ SavedModel) feature extractor.

Only this package imports TensorFlow, Keras, tf2onnx and onnx.
"""

import os

# TensorFlow's C++ logs (CUDA probing, oneDNN notices) would bury fexport's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .export import ExportOptions, ExportResult, export  # noqa: E402

__all__ = ["ExportOptions", "ExportResult", "export"]
