"""The export pipeline in-process: heads, cuts, layouts, dtypes, baked preprocessing, SavedModel.

Every export here has already passed fexport's own verification; the tests check its result
independently again (Keras's preprocess_input + predict + numpy), so a verifier that passed
everything would not hide a wrong export.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest

from fexport.errors import LayerError, UsageError
from fexport.exporter import ExportOptions, export
from fexport.runtime.contract import METADATA_KEY, Contract

keras = pytest.importorskip("keras")

# Same scale-relative bound as the exporter's default: float32 sums in another order.
RTOL = 1e-4


def tiny_convnet(path, channels=3, size=(20, 24)):
    """A small branching functional convnet (residual add, two outputs), saved as .keras."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((*size, channels))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.Add(name="res_add")([x, y])
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_c")(x)
    vec = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(5, name="fc")(vec)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(dense)
    aux = keras.layers.Dense(2, name="aux")(vec)
    model = keras.Model(inputs, [out, aux])
    model.save(path)
    return model


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    return tiny_convnet(path), str(path)


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def keras_layer(model, name, x):
    return keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)


def assert_close(actual, expected):
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * max(np.abs(expected).max(), 1e-6)


def pixels(n, h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("head", ["flatten", "avg", "max", "none"])
def test_each_head_matches_numpy_over_keras(convnet, tmp_path, head):
    model, path = convnet
    out = tmp_path / "f.onnx"
    result = export(ExportOptions(path, layers=["conv_c"], head=head, output=str(out)))
    x = pixels(2, 20, 24)
    raw = keras_layer(model, "conv_c", x)
    expected = {"flatten": raw.reshape(2, -1), "avg": raw.mean(axis=(1, 2)),
                "max": raw.max(axis=(1, 2)), "none": raw}[head]
    assert_close(run_onnx(out, x), expected)
    assert result.contract.feature_dim == int(np.prod(expected.shape[1:]))
    assert result.report.passed and len(result.report.checks) == 2


def test_negative_index_penultimate_and_multi_layer_concat(convnet, tmp_path):
    model, path = convnet
    x = pixels(3, 20, 24)
    by_index = export(ExportOptions(path, layers=["-3"], head="flatten",
                                    output=str(tmp_path / "i.onnx")))
    assert by_index.contract.layers == [model.layers[-3].name]
    pen = export(ExportOptions(path, layers=["penultimate"], output=str(tmp_path / "p.onnx")))
    assert pen.contract.layers == ["fc"] and pen.contract.feature_dim == 5
    both = export(ExportOptions(path, layers=["conv_a", "conv_c"], head="avg",
                                output=str(tmp_path / "m.onnx")))
    expected = np.concatenate([keras_layer(model, "conv_a", x).mean(axis=(1, 2)),
                               keras_layer(model, "conv_c", x).mean(axis=(1, 2))], axis=1)
    assert both.contract.feature_dim == 14
    assert_close(run_onnx(tmp_path / "m.onnx", x), expected)


def test_nchw_layout_uint8_input_and_nchw_flatten_order(convnet, tmp_path):
    model, path = convnet
    out = tmp_path / "n.onnx"
    result = export(ExportOptions(path, layers=["conv_c"], layout="nchw", input_dtype="uint8",
                                  flatten_order="nchw", output=str(out)))
    x = pixels(2, 20, 24)
    got = run_onnx(out, x.astype(np.uint8).transpose(0, 3, 1, 2))
    raw = keras_layer(model, "conv_c", x)
    assert_close(got, raw.transpose(0, 3, 1, 2).reshape(2, -1))  # channels-first order
    assert result.contract.input.layout == "nchw" and result.contract.flatten_order == "nchw"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert session.get_inputs()[0].shape == ["batch", 3, 20, 24]


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_baked_preprocessing_equals_keras_preprocess_input(convnet, tmp_path, mode):
    from keras.applications import imagenet_utils

    model, path = convnet
    out = tmp_path / f"{mode}.onnx"
    export(ExportOptions(path, layers=["gap"], preprocess=mode, output=str(out)))
    x = pixels(2, 20, 24)
    expected = keras_layer(model, "gap", imagenet_utils.preprocess_input(x.copy(), mode=mode))
    assert_close(run_onnx(out, x), expected)


def test_dynamic_batch_and_pinned_batch(convnet, tmp_path):
    _, path = convnet
    export(ExportOptions(path, layers=["gap"], output=str(tmp_path / "d.onnx")))
    for n in (1, 4, 7):
        assert run_onnx(tmp_path / "d.onnx", pixels(n, 20, 24)).shape == (n, 6)
    pinned = export(ExportOptions(path, layers=["gap"], batch=2,
                                  output=str(tmp_path / "b.onnx")))
    assert pinned.contract.input.batch == 2
    assert run_onnx(tmp_path / "b.onnx", pixels(2, 20, 24)).shape == (2, 6)


def test_saved_model_reloads_and_matches_onnx(convnet, tmp_path):
    import tensorflow as tf

    _, path = convnet
    onnx_path, saved = tmp_path / "s.onnx", tmp_path / "saved"
    result = export(ExportOptions(path, layers=["conv_c"], head="max", output=str(onnx_path),
                                  saved_model=str(saved)))
    x = pixels(3, 20, 24)
    reloaded = tf.saved_model.load(str(saved))
    served = reloaded.signatures["serving_default"](images=tf.constant(x))["features"].numpy()
    assert_close(served, run_onnx(onnx_path, x))
    sidecar = Contract.from_json((saved / "fexport_contract.json").read_text())
    assert sidecar.layers == ["conv_c"] and sidecar.feature_dim == result.contract.feature_dim


def test_contract_is_in_onnx_metadata(convnet, tmp_path):
    _, path = convnet
    out = tmp_path / "c.onnx"
    export(ExportOptions(path, layers=["gap"], output=str(out)))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    contract = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert contract["source"].endswith("tiny.keras") and contract["layers"] == ["gap"]
    assert contract["feature_dim"] == 6 and contract["verification"]["passed"] is True
    assert set(contract["versions"]) >= {"fexport", "keras", "tensorflow", "tf2onnx", "opset"}


def test_a_wrong_onnx_file_fails_verification(convnet, tmp_path):
    """A real defect, one no host's rounding can explain: a convolution's weights changed in
    the exported file. (An impossible tolerance alone, such as min_cosine 1.5, is not one: where
    ONNX matches Keras as closely as Keras matches itself, the noise floor rightly calls it
    rounding.)"""
    import onnx

    from fexport.exporter.export import verify_file
    from fexport.reports import DEFECT

    _, path = convnet
    out = tmp_path / "v.onnx"
    export(ExportOptions(path, layers=["gap"], output=str(out)))
    model = onnx.load(out)
    weights = next(t for t in model.graph.initializer if len(t.dims) == 4)
    scaled = onnx.numpy_helper.to_array(weights) * 1.5
    weights.CopyFrom(onnx.numpy_helper.from_array(scaled, weights.name))
    onnx.save(model, out)
    report = verify_file(out, source=path)
    assert not report.passed and report.first_failure.outcome == DEFECT
    assert report.first_failure.max_rel > 0.01


def test_layer_errors_say_what_exists(convnet, tmp_path):
    _, path = convnet
    out = str(tmp_path / "e.onnx")
    with pytest.raises(LayerError, match="Did you mean conv_c"):
        export(ExportOptions(path, layers=["conv_cc"], output=out))
    with pytest.raises(LayerError, match=r"out of range: the model has \d+ layers"):
        export(ExportOptions(path, layers=["99"], output=out))
    with pytest.raises(LayerError, match="already a vector.*--head flatten"):
        export(ExportOptions(path, layers=["fc"], head="avg", output=out))
    with pytest.raises(UsageError, match="nothing to write"):
        export(ExportOptions(path, layers=["fc"]))


def test_unknown_height_width_needs_input_size(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalMaxPooling2D(name="gmp")(x))
    path = tmp_path / "fcn.keras"
    model.save(path)
    with pytest.raises(LayerError, match="--input-size H W"):
        export(ExportOptions(str(path), layers=["conv"], output=str(tmp_path / "x.onnx")))
    result = export(ExportOptions(str(path), layers=["conv"], input_size=(16, 12),
                                  output=str(tmp_path / "x.onnx")))
    assert result.contract.feature_dim == 14 * 10 * 4 and result.report.passed


def test_no_preprocess_leaves_it_to_the_runtime(convnet, tmp_path):
    from fexport.runtime import FeatureExtractor

    _, path = convnet
    baked, raw = tmp_path / "baked.onnx", tmp_path / "raw.onnx"
    export(ExportOptions(path, layers=["gap"], preprocess="torch", output=str(baked)))
    result = export(ExportOptions(path, layers=["gap"], preprocess="torch",
                                  bake_preprocessing=False, output=str(raw)))
    assert result.contract.preprocessing_baked is False and result.report.passed
    x = pixels(3, 20, 24)
    # The raw graph expects preprocessed input; the extractor applies torch mode in numpy.
    from_raw = FeatureExtractor(raw, device="cpu").extract(x)
    assert_close(from_raw, FeatureExtractor(baked, device="cpu").extract(x))
    assert not np.allclose(run_onnx(raw, x), from_raw)


def test_registry_weights_from_a_file(tmp_path):
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    source = keras.applications.MobileNetV2(weights=None, include_top=False,
                                            input_shape=(96, 96, 3), alpha=1.0)
    weights = tmp_path / "mine.weights.h5"
    source.save_weights(weights)
    out = tmp_path / "w.onnx"
    result = export(ExportOptions("mobilenetv2", weights=str(weights), head="avg",
                                  input_size=(96, 96), output=str(out)))
    assert result.contract.weights == str(weights) and result.report.passed
    x = pixels(2, 96, 96)
    expected = source.predict(keras.applications.mobilenet_v2.preprocess_input(x.copy()),
                              verbose=0).mean(axis=(1, 2))
    assert_close(run_onnx(out, x), expected)
