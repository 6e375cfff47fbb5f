"""End to end on real photos: `fexport extract` equals the Keras pipeline a data scientist would
write (load_img, img_to_array, preprocess_input, the cut model's predict, then the head)."""

import numpy as np
import pytest

from conftest import MINI_XCEPTION, run_cli
from fexport import models

keras = pytest.importorskip("keras")

# Scale-relative bound, as in verification: the same float32 math summed in another order.
RTOL = 1e-4


def keras_pipeline(model, layer, head, paths, size, preprocess, color_mode="rgb"):
    arrays = [keras.utils.img_to_array(keras.utils.load_img(
        p, target_size=size, color_mode=color_mode)) for p in paths]
    from fexport.exporter.cut import keras_module  # Keras 3 or tf_keras, as loaded

    cut = keras_module(model).Model(model.inputs, model.get_layer(layer).output)
    raw = cut.predict(preprocess(np.stack(arrays)), verbose=0)
    if head == "flatten":
        return raw.reshape(len(paths), -1)
    return raw.mean(axis=(1, 2)) if head == "avg" else raw.max(axis=(1, 2))


def registry_model(name):
    """The model `--weights none` builds: Keras's random init with seed 0."""
    from fexport.exporter.load import build_registry_model

    return build_registry_model(models.get(name), "none", include_top=False)


def extract(model_file, photos, tmp_path, *extra):
    out = tmp_path / "features.npz"
    proc = run_cli("extract", model_file, photos, "-o", out, "--device", "cpu", *extra)
    data = np.load(out)
    return data["features"], list(data["paths"]), proc


def assert_close(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


def test_vgg16_flatten_matches_keras(vgg16_onnx, photos, photo_paths, tmp_path):
    features, paths, proc = extract(vgg16_onnx, photos, tmp_path)
    assert paths == photo_paths and "extracted 9 of 9 images" in proc.stdout
    expected = keras_pipeline(registry_model("VGG16"), "block5_pool", "flatten", photo_paths,
                              (224, 224), keras.applications.vgg16.preprocess_input)
    assert_close(features, expected)


@pytest.mark.parametrize("name,module,layer,head", [
    ("ResNet50", "resnet50", "conv5_block3_out", "avg"),
    ("MobileNetV2", "mobilenet_v2", "out_relu", "max"),
])
def test_registry_models_match_keras(name, module, layer, head, photos, photo_paths, tmp_path):
    onnx_path = tmp_path / f"{name}.onnx"
    run_cli(name, "--weights", "none", "--head", head, "-o", onnx_path)
    features, _, _ = extract(onnx_path, photos, tmp_path, "--batch-size", "4")
    preprocess = getattr(keras.applications, module).preprocess_input
    model = registry_model(name)
    assert_close(features, keras_pipeline(model, layer, head, photo_paths, (224, 224),
                                           preprocess))


def test_grayscale_third_party_model_matches_keras(photos, photo_paths, tmp_path):
    onnx_path = tmp_path / "fer.onnx"
    run_cli("export", MINI_XCEPTION, "--layer", "add_4", "--head", "avg", "--preprocess", "tf",
            "-o", onnx_path)
    features, _, _ = extract(onnx_path, photos, tmp_path)
    from fexport.exporter.load import load_file

    model = load_file(MINI_XCEPTION)[0]
    expected = keras_pipeline(model, "add_4", "avg", photo_paths, (64, 64),
                              lambda x: x / 127.5 - 1.0, color_mode="grayscale")
    assert_close(features, expected)
