"""exporter/sources.py: the one place that decides what a model source is, for export and
`layers` alike (real Keras objects and files; nothing is converted here)."""

import pytest

from conftest import DATA
from fexport.errors import ModelNotFoundError, UsageError

keras = pytest.importorskip("keras")
sources = pytest.importorskip("fexport.exporter.sources")


def test_each_kind_of_source_is_told_apart(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    preset = tmp_path / "preset"
    preset.mkdir()
    for name in ("config.json", "model.weights.h5"):  # what save_to_preset writes
        (preset / name).write_text("{}")
    kinds = {str(preset): sources.HUB, "hf://org/model": sources.HUB,
             str(DATA / "mlcommons_tiny_cifar10_pretrainedResnet.h5"): sources.FILE,
             "vgg16": sources.REGISTRY}
    for given, kind in kinds.items():
        assert sources.resolve(given).kind == kind, given
    assert sources.resolve(model).kind == sources.LIVE
    assert sources.resolve("vgg16").spec.name == "VGG16"  # the registry's own spelling


def test_a_keras_hub_preset_name_is_a_hub_source_and_a_registry_name_is_not():
    pytest.importorskip("keras_hub")
    assert sources.resolve("dinov2_small").kind == sources.HUB
    assert sources.resolve("resnet50").kind == sources.REGISTRY  # KerasHub's is resnet_50_...


def test_an_unknown_name_or_object_is_refused_with_what_would_work():
    with pytest.raises(ModelNotFoundError, match="Did you mean VGG19, VGG16"):
        sources.resolve("vgg17")
    with pytest.raises(UsageError, match="'int' is neither a Keras model.*registry name"):
        sources.resolve(5)
