"""fexport: turn a Keras model into a fast, verified ONNX image feature extractor.

`import fexport` is light: TensorFlow and the inference engine load only when a function that
needs them runs. The names below are the public Python API (fexport/api.py, fexport.runtime).
"""

__version__ = "0.1.0"

__all__ = ["FeatureExtractor", "export", "extract_to_file", "layers"]

_LAZY = {"export": "fexport.api", "layers": "fexport.api",
         "FeatureExtractor": "fexport.runtime", "extract_to_file": "fexport.runtime"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fexport' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
