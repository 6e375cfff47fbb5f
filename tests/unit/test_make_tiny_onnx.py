"""tests/data: the committed tiny model is exactly what make_tiny_onnx.py writes, and its numpy
reference is what the graph computes."""

import numpy as np
import pytest

from fexport.runtime.contract import write_onnx


def test_the_committed_model_is_what_the_script_writes(tmp_path, tiny_model, tiny_script):
    pytest.importorskip("onnx")
    written = tmp_path / "tiny_features.onnx"
    write_onnx(tiny_script.build(), tiny_script.contract(), written)
    assert written.read_bytes() == tiny_model.read_bytes(), \
        "rerun python tests/data/make_tiny_onnx.py and commit tests/data/tiny_features.onnx"


def test_the_graph_is_valid_onnx_with_the_stated_weights(tiny_model, tiny_script):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(tiny_model))
    onnx.checker.check_model(model, full_check=True)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kernel, bias = tiny_script.weights()
    np.testing.assert_array_equal(weights["kernel"], kernel)
    np.testing.assert_array_equal(weights["bias"], bias)


def test_the_reference_follows_the_graphs_definition(tiny_script):
    """A pixel-exact case by hand: a constant image gives x = c / 127.5 - 1 everywhere, so the
    interior of the convolution is (sum of kernel) * x + bias, and the border loses the padded
    taps; the mean over the 16x16 map is computed here tap by tap."""
    kernel, bias = tiny_script.weights()
    c = 200.0
    x = c / 127.5 - 1.0
    image = np.full((1, 16, 16, 3), c, np.float32)
    # how many of the 16x16 outputs see tap (dy, dx) inside the image: 15 rows/cols at the edge
    rows = np.array([15, 16, 15])
    counts = rows[:, None] * rows[None, :]
    maps = np.zeros((4, 16, 16))
    for dy in range(3):
        for dx in range(3):
            inside = np.zeros((16, 16))
            inside[max(0, 1 - dy):16 - max(0, dy - 1), max(0, 1 - dx):16 - max(0, dx - 1)] = 1
            assert inside.sum() == counts[dy, dx]
            maps += inside * (kernel[:, :, dy, dx].sum(axis=1) * x)[:, None, None]
    by_hand = np.maximum(maps + bias[:, None, None], 0).mean(axis=(1, 2))
    # float64 on both sides; the reference casts its result to float32 (relative 6e-8).
    np.testing.assert_allclose(tiny_script.expected_features(image)[0], by_hand, rtol=1e-6)
