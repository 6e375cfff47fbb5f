"""Models travel to the GPU machine as skeletons (weights emptied) and get seeded random weights
there: the skeleton is small, and the filled model runs with the same inputs and outputs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from conftest import DATA
from fexport.bench.gpu_carry import fill_weights, strip_weights
from fexport.runtime import FeatureExtractor

TINY = DATA / "tiny_features.onnx"


def test_a_skeleton_keeps_shapes_and_gets_lecun_scaled_weights_back(tmp_path):
    skeleton, filled = tmp_path / "tiny.skeleton.onnx", tmp_path / "tiny.onnx"
    strip_weights(TINY, skeleton, min_size=1)
    emptied = [t for t in onnx.load(str(skeleton)).graph.initializer if not t.raw_data]
    assert [list(t.dims) for t in emptied] == [[4, 3, 3, 3]]  # the kernel, not the bias
    fill_weights(skeleton, filled, seed=1)
    kernel = next(numpy_helper.to_array(t) for t in onnx.load(str(filled)).graph.initializer
                  if t.name == emptied[0].name)
    assert abs(kernel.std() - np.sqrt(1 / 27)) < 0.05  # fan-in 3x3x3
    features = FeatureExtractor(filled, device="cpu").predict(np.full((2, 16, 16, 3), 9.0,
                                                                      np.float32))
    assert features.shape == (2, 4) and np.isfinite(features).all()
