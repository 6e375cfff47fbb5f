"""The lean half of fexport: numpy, pillow and onnxruntime only, never TensorFlow.

`ImageFeatures` (the scikit-learn transformer) is imported on first use: scikit-learn is the
optional `sklearn` extra, and a missing one is named with the command that installs it.
"""

from .contract import Contract, InputSpec
from .engines import Summary, extract_to_file
from .extractor import Batch, FeatureExtractor

__all__ = ["Batch", "Contract", "FeatureExtractor", "ImageFeatures", "InputSpec", "Summary",
           "extract_to_file"]


def __getattr__(name):
    if name == "ImageFeatures":
        from .image_features import ImageFeatures

        return ImageFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
