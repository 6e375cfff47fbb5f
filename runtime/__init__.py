"""The lean half of fexport: numpy, pillow and onnxruntime only, never TensorFlow."""

from .contract import Contract, InputSpec
from .engines.local import extract_to_file
from .extractor import Batch, FeatureExtractor

__all__ = ["Batch", "Contract", "FeatureExtractor", "InputSpec", "extract_to_file"]
