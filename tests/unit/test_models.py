"""fexport.models: the backbone registry (pure data, no TensorFlow) and the preprocessing
modes of keras.applications."""

import numpy as np
import pytest

from fexport import models
from fexport.errors import ModelNotFoundError, UsageError
from fexport.models import preprocessing


def test_every_backbone_is_named_once_with_sane_data():
    names = models.names()
    assert len(names) == len(set(n.lower() for n in names)) == len(models.SPECS) == 40
    for spec in models.SPECS:
        assert spec.preprocessing in preprocessing.MODES
        assert spec.input_size[0] == spec.input_size[1] >= 224
        assert spec.feature_dim > 0 and spec.top_layers
        assert spec.constructor == f"keras.applications.{spec.name}"
        assert spec.preprocess_function == f"keras.applications.{spec.module}.preprocess_input"


def test_known_backbones_have_their_keras_cut_and_width():
    vgg = models.get("VGG16")
    assert (vgg.feature_layer, vgg.feature_dim, vgg.input_size, vgg.preprocessing) == \
        ("block5_pool", 512, (224, 224), "caffe")
    assert models.get("inceptionv3").input_size == (299, 299)
    assert models.get("ConvNeXtTiny").feature_layer is None  # Keras's name changes per session


@pytest.mark.parametrize("spelling", ["vgg16", "VGG16", "Vgg-16", "vgg_16"])
def test_names_are_found_in_any_spelling(spelling):
    assert models.find(spelling).name == "VGG16"


def test_an_unknown_name_suggests_close_ones():
    assert models.find("vgg17") is None
    with pytest.raises(ModelNotFoundError, match="Did you mean ") as caught:
        models.get("vgg17")
    suggested = str(caught.value).split("Did you mean ")[1].split("?")[0]
    assert sorted(suggested.split(", ")) == ["VGG16", "VGG19"]
    assert "`fexport models` lists all 40" in str(caught.value)
    with pytest.raises(ModelNotFoundError) as caught:
        models.get("zzzzzz")
    assert "Did you mean" not in str(caught.value)


# The modes by hand, from keras.applications' documented preprocess_input.
PIXEL = np.array([[[[255.0, 128.0, 0.0]]]], np.float32)


@pytest.mark.parametrize("mode, expected", [
    ("caffe", [0.0 - 103.939, 128.0 - 116.779, 255.0 - 123.68]),  # BGR minus the BGR mean
    ("tf", [1.0, 128.0 / 127.5 - 1.0, -1.0]),
    ("torch", [(1.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]),
    ("none", [255.0, 128.0, 0.0]),
])
def test_each_mode_matches_keras(mode, expected):
    out = preprocessing.apply(mode, PIXEL)
    assert out.dtype == np.float32
    # float32 arithmetic against float64 by hand: a few float32 ulps of values up to ~150.
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6, atol=1e-5)


def test_colour_modes_are_refused_for_grayscale_and_unknown_modes_anywhere():
    preprocessing.check_mode("tf", 1)
    preprocessing.check_mode("caffe", 3)
    with pytest.raises(UsageError, match="needs 3 \\(RGB\\) channels"):
        preprocessing.check_mode("torch", 1)
    with pytest.raises(UsageError, match="unknown preprocessing mode 'imagenet'"):
        preprocessing.check_mode("imagenet", 3)
