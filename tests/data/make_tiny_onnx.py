"""Writes tests/data/tiny_features.onnx: a tiny fexport-style feature extractor for the unit
tests, made with the onnx package alone (no TensorFlow), so the runtime's tests need no export.

    python tests/data/make_tiny_onnx.py        # needs onnx (the export or quantize extra)

The graph is what an fexport export looks like, in miniature: NHWC RGB pixels 0..255 in
(N, 16, 16, 3), the "tf" preprocessing baked in (x / 127.5 - 1), a 3x3 convolution to 4
channels with ReLU, then a global-average head: (N, 4) float32 "features". The weights come
from a fixed seed, and `expected_features` computes the same features with numpy, so the unit
tests can check the engines against an independent reference. The fexport contract is in the
file's metadata, as an export writes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("tiny_features.onnx")
SIZE, CHANNELS, FILTERS, SEED = 16, 3, 4, 0


def weights():
    rng = np.random.default_rng(SEED)
    kernel = rng.normal(0, 0.5, (FILTERS, CHANNELS, 3, 3)).astype(np.float32)  # OIHW
    bias = rng.normal(0, 0.1, FILTERS).astype(np.float32)
    return kernel, bias


def expected_features(pixels: np.ndarray) -> np.ndarray:
    """The model's features for float32 NHWC pixels 0..255, computed with numpy."""
    kernel, bias = weights()
    x = pixels.astype(np.float64) / 127.5 - 1.0
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((len(x), SIZE, SIZE, FILTERS))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy:dy + SIZE, dx:dx + SIZE, :]
            out += np.einsum("nhwc,oc->nhwo", window, kernel[:, :, dy, dx])
    return np.maximum(out + bias, 0).mean(axis=(1, 2)).astype(np.float32)


def build():
    from onnx import TensorProto, helper, numpy_helper

    kernel, bias = weights()
    nodes = [helper.make_node("Div", ["images", "scale"], ["scaled"]),
             helper.make_node("Sub", ["scaled", "one"], ["centred"]),
             helper.make_node("Transpose", ["centred"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "kernel", "bias"], ["conv"], pads=[1, 1, 1, 1],
                              name="conv"),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"])]
    constants = [numpy_helper.from_array(np.float32(127.5), "scale"),
                 numpy_helper.from_array(np.float32(1.0), "one"),
                 numpy_helper.from_array(kernel, "kernel"),
                 numpy_helper.from_array(bias, "bias")]
    graph = helper.make_graph(
        nodes, "tiny_features",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", SIZE, SIZE, CHANNELS])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FILTERS])],
        constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def contract():
    from fexport.runtime.contract import Contract, InputSpec

    return Contract(source="tiny_features", source_kind="file", weights=f"seed {SEED}",
                    layers=["conv"], head="avg", input=InputSpec("images", SIZE, SIZE, CHANNELS),
                    preprocessing="tf", preprocessing_baked=True, feature_dim=FILTERS,
                    seed=SEED)


def main() -> int:
    from fexport.runtime.contract import write_onnx

    write_onnx(build(), contract(), OUT)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
