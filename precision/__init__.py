"""Reduced-precision variants of an exported model (INT8, FP16) and how their features are
judged against float32. ONNX in, ONNX out: needs onnx and ONNX Runtime, never TensorFlow."""
