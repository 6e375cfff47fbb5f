"""The registry is data: every keras.applications backbone, one lookup rule, valid modes."""

import pytest

from fexport import models
from fexport.errors import ModelNotFoundError

KERAS_APPLICATIONS = 40


def test_every_keras_application_is_registered():
    keras = pytest.importorskip("keras")
    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    assert set(models.names()) == constructors
    assert len(models.SPECS) == KERAS_APPLICATIONS


@pytest.mark.parametrize("spec", models.SPECS, ids=lambda s: s.name)
def test_spec_is_consistent(spec):
    assert spec.preprocessing in models.preprocessing.MODES
    assert spec.input_size[0] >= 32 and spec.input_size == spec.input_size[::-1]
    assert spec.feature_dim > 0 and spec.top_layers
    keras = pytest.importorskip("keras")
    module = getattr(keras.applications, spec.module)
    assert callable(getattr(keras.applications, spec.name)) and callable(module.preprocess_input)


@pytest.mark.parametrize("name", ["vgg16", "VGG16", "Vgg16", "resnet50", "efficientnet_b0",
                                  "mobilenet-v2"])
def test_lookup_ignores_case_and_separators(name):
    assert models.get(name).name.lower().replace("_", "") == \
        name.lower().replace("_", "").replace("-", "")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelNotFoundError) as info:
        models.get("resnet5")
    message = str(info.value)
    assert "'resnet5'" in message and "Did you mean ResNet50" in message
    assert "fexport models" in message
