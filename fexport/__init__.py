"""fexport: turn a Keras model into a fast, verified ONNX image feature extractor."""

__version__ = "0.1.0"
