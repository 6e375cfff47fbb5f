"""The "From a notebook" block of docs/notebook.md, run as it stands (with WEIGHTS = "none",
since the tests are offline): VGG16 features into a logistic regression, a live channels-first
convnet into a random forest, the penultimate layer and two layers joined."""

import os
import re

import numpy as np
import pytest

from conftest import ROOT
from test_layouts import origin_convnet

keras = pytest.importorskip("keras")


def notebook_block() -> str:
    text = (ROOT / "docs" / "notebook.md").read_text()
    block = re.search(r"<!-- notebook-example -->\n"
                      r"<!-- runs: tests/test_notebook.py::test_the_notebook_example_runs -->\n"
                      r"```python\n(.*?)```\n<!-- /notebook-example -->", text, re.S)
    assert block, "docs/notebook.md lost its notebook example (or the marker naming this test)"
    code = block.group(1)
    assert 'WEIGHTS = "imagenet"' in code
    return code.replace('WEIGHTS = "imagenet"', 'WEIGHTS = "none"')


@pytest.mark.slow
def test_the_notebook_example_runs(photo_paths, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()  # layer names count from zero, as in a fresh notebook
    rng = np.random.default_rng(0)
    namespace = {"paths": photo_paths, "labels": [i % 2 for i in range(len(photo_paths))],
                 "model": origin_convnet(), "y": [0, 1, 0, 1],
                 "x": rng.integers(0, 256, (4, 1, 299, 299)).astype(np.float32)}
    exec(compile(notebook_block(), "docs/notebook.md", "exec"), namespace)
    n = len(photo_paths)
    assert namespace["X"].shape == (n, 25088) and namespace["fc2"].shape == (n, 4096)
    assert namespace["joined"].shape == (n, 1024) and namespace["F"].shape == (4, 78400)
    assert namespace["classifier"].predict(namespace["X"]).shape == (n,)
    assert namespace["forest"].predict(namespace["F"]).shape == (4,)
    cut = keras.Model(namespace["model"].inputs,
                      namespace["model"].get_layer("max_pooling2d_2").output)
    expected = cut.predict(namespace["x"], verbose=0).reshape(4, -1)
    # Scale-relative float32 bound, as everywhere: sums in another order.
    assert np.abs(namespace["F"] - expected).max() <= 1e-4 * np.abs(expected).max()
    assert "verification passed" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["own.onnx", "vgg16_b4b5.onnx", "vgg16_fc2.onnx",
                                            "vgg16_feat.onnx"]
