"""The lean half of fexport: numpy, pillow and onnxruntime only, never TensorFlow."""

from .contract import Contract, InputSpec
from .extractor import Batch, FeatureExtractor
from .job import extract_to_file

__all__ = ["Batch", "Contract", "FeatureExtractor", "InputSpec", "extract_to_file"]
