"""Users' own models: the real third-party files in tests/data and files the tests save
with Keras 3 and tf_keras themselves (old Sequential .h5, SavedModel, odd layer names)."""

import numpy as np
import onnxruntime as ort
import pytest

from conftest import MINI_XCEPTION, MNIST_CNN, RESNET8
from fexport.errors import ModelLoadError
from fexport.exporter import ExportOptions, export
from fexport.exporter.cut import make_names_scope_safe
from fexport.exporter.load import load_file
from fexport.runtime import FeatureExtractor

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")


@pytest.mark.parametrize("path,layer,head,preprocess,dim", [
    (MINI_XCEPTION, "add_4", "avg", "tf", 128),  # Keras 2.0.5 .hdf5, grayscale 64x64
    (MINI_XCEPTION, "add_2", "flatten", "tf", 15 * 15 * 32),
    (RESNET8, "activation_6", "avg", "none", 64),  # tf.keras 2.4 .h5, 32x32x3
    (MNIST_CNN, "max_pooling2d_1", "flatten", "none", 5 * 5 * 64),  # Keras 3.15 .keras
    (MNIST_CNN, "dense", "flatten", "none", 128),
], ids=["xception-add4", "xception-add2", "resnet8", "mnist-pool", "mnist-dense"])
def test_real_third_party_models_export_and_verify(tmp_path, photo_paths, path, layer, head,
                                                   preprocess, dim):
    out = tmp_path / "m.onnx"
    result = export(ExportOptions(str(path), layers=[layer], head=head, preprocess=preprocess,
                                  output=str(out), verify_images=photo_paths[:4]))
    assert result.contract.feature_dim == dim
    assert result.report.passed and len(result.report.checks) == 3  # 2 random + photos
    features = FeatureExtractor(out, device="cpu").extract(photo_paths)
    assert features.shape == (len(photo_paths), dim) and np.isfinite(features).all()


def test_keras2_h5_needs_the_tf_keras_fallback():
    model, source = load_file(MINI_XCEPTION)
    assert source.loader in ("keras", "tf_keras") and model.input_shape == (None, 64, 64, 1)


def _old_sequential(module):
    """A Sequential model without an InputLayer, as Keras 2 users wrote them."""
    layers = module.layers
    return module.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(16, 16, 3), name="conv-1"),
        layers.MaxPooling2D(name="pool/1"),
        layers.Flatten(name="flat"),
        layers.Dense(3, name="out"),
    ])


def test_tf_keras_sequential_h5_and_saved_model(tmp_path):
    tf_keras.utils.set_random_seed(3)
    model = _old_sequential(tf_keras)
    model.save(tmp_path / "old.h5")
    model.save(tmp_path / "saved_model_dir")  # tf_keras 2.x: a SavedModel directory
    for source in ("old.h5", "saved_model_dir"):
        result = export(ExportOptions(str(tmp_path / source), layers=["pool/1"], head="max",
                                      output=str(tmp_path / "o.onnx")))
        assert result.contract.feature_dim == 4 and result.report.passed, source
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "o.onnx"), providers=["CPUExecutionProvider"])
    cut = tf_keras.Model(model.inputs, model.get_layer("pool/1").output)
    expected = cut.predict(x, verbose=0).max(axis=(1, 2))
    np.testing.assert_allclose(session.run(None, {"images": x})[0], expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_model_with_its_own_rescaling_is_not_preprocessed_twice(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    # Normalization's mean/variance reach the traced graph as captured tensors, which tf2onnx
    # left as unfed inputs until fexport inlined them (exporter/fixes.py; ConvNeXt has one too).
    x = keras.layers.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.04, 0.05, 0.06],
                                   name="norm")(x)
    x = keras.layers.Conv2D(3, 3, name="conv 1")(x)  # a space ONNX names dislike
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    model.save(tmp_path / "r.keras")
    result = export(ExportOptions(str(tmp_path / "r.keras"), layers=["conv 1"], head="avg",
                                  output=str(tmp_path / "r.onnx")))
    assert result.contract.preprocessing == "none" and result.report.passed
    x = np.full((1, 12, 12, 3), 255.0, np.float32)
    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    make_names_scope_safe(model)  # Keras 3 itself cannot run a layer named "conv 1" in TF
    np.testing.assert_allclose(session.run(None, {"images": x})[0], model.predict(x, verbose=0),
                               rtol=1e-5)


def test_lambda_layer_needs_unsafe(tmp_path):
    tf_keras.utils.set_random_seed(5)
    model = tf_keras.Sequential([
        tf_keras.layers.Lambda(lambda t: t * 2.0, input_shape=(8, 8, 3), name="double"),
        tf_keras.layers.Conv2D(2, 3, name="conv"),
    ])
    model.save(tmp_path / "lambda.h5")
    out = str(tmp_path / "l.onnx")
    with pytest.raises(ModelLoadError, match="Lambda layer.*--unsafe"):
        export(ExportOptions(str(tmp_path / "lambda.h5"), layers=["conv"], output=out))
    result = export(ExportOptions(str(tmp_path / "lambda.h5"), layers=["conv"], head="avg",
                                  output=out, unsafe=True))
    assert result.report.passed


def test_truncated_keras_file_names_the_loaders(tmp_path):
    data = MNIST_CNN.read_bytes()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot load .*broken.keras; tried keras"):
        export(ExportOptions(str(broken), output=str(tmp_path / "x.onnx")))
