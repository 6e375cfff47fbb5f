"""The origin question's user: her own channels-first grayscale convnet, a tf.keras 2 MLP whose
input has no channel axis, VGG16 with channels-first input and features, her arrays in her own
layout, and a live model object exported from Python. Each result is checked against Keras
itself (predict, then numpy), not against fexport's own verification."""

import json

import numpy as np
import pytest
from PIL import Image

import fexport
from conftest import error_line, run_cli
from fexport.errors import ImageError, UsageError
from fexport.runtime import FeatureExtractor
from fexport.runtime.files import images

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

# Scale-relative bound, as the exporter's default: float32 sums in another order.
RTOL = 1e-4


def assert_close(actual, expected):
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * max(np.abs(expected).max(), 1e-6)


def origin_convnet():
    """The question's convnet: Conv2D(32, 3, 3) on (1, 299, 299), channels first, then two
    more conv + pool blocks, then the classifier."""
    keras.utils.set_random_seed(3)
    layers, cf = keras.layers, {"data_format": "channels_first"}

    def block(filters):
        return [layers.Conv2D(filters, (3, 3), **cf), layers.Activation("relu"),
                layers.MaxPooling2D((2, 2), **cf)]

    return keras.Sequential([keras.Input((1, 299, 299)), *block(32), *block(32), *block(64),
                             layers.Flatten(), layers.Dense(64), layers.Activation("relu"),
                             layers.Dense(2), layers.Activation("sigmoid")])


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("origin")
    model = origin_convnet()
    model.save(folder / "origin.keras")
    last_pool = model.layers[8].name
    cut = keras.Model(model.inputs, model.get_layer(last_pool).output)
    return model, folder / "origin.keras", last_pool, cut


@pytest.fixture(scope="module")
def origin_flatten(origin, tmp_path_factory):
    """Exported from the file, through the CLI."""
    _, path, last_pool, _ = origin
    out = tmp_path_factory.mktemp("origin_cli") / "flatten.onnx"
    proc = run_cli("export", path, "--layer", last_pool, "--head", "flatten", "-o", out)
    assert "verification passed" in proc.stdout and "features (N, 78400)" in proc.stdout
    return out


@pytest.fixture(scope="module")
def origin_avg(origin, tmp_path_factory):
    """Exported from the live object, through the Python API."""
    model, _, last_pool, _ = origin
    out = tmp_path_factory.mktemp("origin_api") / "avg.onnx"
    result = fexport.export(model, layer=last_pool, head="avg", output=out)
    assert (result.contract.source_kind, result.contract.source_class) == ("memory",
                                                                           "Sequential")
    assert result.report.passed and result.written == [str(out)]
    return out


def _arrays(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.float32)


def test_origin_flatten_equals_keras_reshape(origin, origin_flatten):
    _, _, _, cut = origin
    x = _arrays(3, (1, 299, 299))
    extractor = FeatureExtractor(origin_flatten, device="cpu")
    assert (extractor.contract.input.layout, extractor.contract.flatten_order) == ("nchw",
                                                                                   "nchw")
    got = extractor.extract(x)
    assert got.shape == (3, 78400)
    assert_close(got, cut.predict(x, verbose=0).reshape(3, -1))  # the origin answer's reshape
    # One (1, 299, 299) image, a list of them and channels-last arrays give the same rows.
    np.testing.assert_array_equal(extractor.extract(x[0]), got[:1])
    np.testing.assert_array_equal(extractor.extract(list(x)), got)
    np.testing.assert_array_equal(extractor.extract(x.transpose(0, 2, 3, 1)), got)


def test_origin_avg_from_the_live_model(origin, origin_avg):
    _, _, _, cut = origin
    x = _arrays(2, (1, 299, 299), seed=1)
    got = FeatureExtractor(origin_avg, device="cpu").extract(x)
    assert_close(got, cut.predict(x, verbose=0).mean(axis=(2, 3)))


def test_origin_extracts_grayscale_image_files(origin, origin_flatten, photo_paths, tmp_path):
    _, _, _, cut = origin
    gray = []
    for i, path in enumerate(photo_paths[:3]):
        gray.append(tmp_path / f"g{i}.png")
        Image.open(path).convert("L").save(gray[-1])
    out = tmp_path / "f.npy"
    run_cli("extract", origin_flatten, *gray, "-o", out)
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        p, color_mode="grayscale", target_size=(299, 299), interpolation="nearest"),
        data_format="channels_first") for p in gray])
    assert_close(np.load(out), cut.predict(pixels, verbose=0).reshape(3, -1))


def test_layers_shows_channels_first_widths(origin):
    _, path, last_pool, _ = origin
    rows = json.loads(run_cli("layers", path, "--json").stdout)
    row = next(r for r in rows if r["name"] == last_pool)
    assert (row["output_shape"], row["flatten"], row["avg"]) == ([None, 64, 35, 35], 78400, 64)
    live = {r.name: r for r in fexport.layers(origin[0])}
    assert (live[last_pool].flatten, live[last_pool].max) == (78400, 64)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The classic tf.keras 2 MNIST MLP: Flatten(input_shape=(28, 28)), saved as .h5."""
    tf_keras.utils.set_random_seed(5)
    model = tf_keras.Sequential([tf_keras.layers.Flatten(input_shape=(28, 28)),
                                 tf_keras.layers.Dense(128, activation="relu", name="hidden"),
                                 tf_keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("mlp") / "mlp.h5"
    model.save(path)
    return model, path


def test_mlp_without_a_channel_axis_exports_its_hidden_layer(mlp, tmp_path):
    model, path = mlp
    out = tmp_path / "mlp.onnx"
    proc = run_cli("export", path, "--layer", "hidden", "--head", "none", "-o", out)
    assert "features (N, 128)" in proc.stdout and "input ('N', 28, 28)" in proc.stdout
    hidden = tf_keras.Model(model.inputs, model.get_layer("hidden").output)
    x = _arrays(4, (28, 28))
    extractor = FeatureExtractor(out, device="cpu")
    assert extractor.contract.input.layout == "nhw"
    assert_close(extractor.extract(x), hidden.predict(x, verbose=0))
    np.testing.assert_array_equal(extractor.extract(x[0]), extractor.extract(x[:1]))
    np.testing.assert_array_equal(extractor.extract(x[..., None]), extractor.extract(x))


def test_mlp_refuses_a_pooling_head_in_one_line(mlp, tmp_path):
    _, path = mlp
    proc = run_cli("export", path, "--layer", "hidden", "--head", "avg", "-o",
                   tmp_path / "x.onnx", check=False)
    assert proc.returncode == 1
    assert "outputs (None, 128), already a vector" in error_line(proc)


def test_vgg16_channels_first_input_and_features(tmp_path):
    from keras.applications import vgg16

    out = tmp_path / "vgg16_nchw.onnx"
    run_cli("vgg16", "--layer", "block5_pool", "--layout", "nchw", "--flatten-order", "nchw",
            "--weights", "none", "-o", out)
    x = _arrays(4, (3, 224, 224), seed=2)
    got = FeatureExtractor(out, device="cpu").extract(x)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # fexport's --seed default: the same random weights
    model = vgg16.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    nhwc = model.predict(vgg16.preprocess_input(x.transpose(0, 2, 3, 1).copy()), verbose=0)
    assert got.shape == (4, 25088)
    assert_close(got, nhwc.transpose(0, 3, 1, 2).reshape(4, -1))  # Keras's (4, 512, 7, 7)


@pytest.mark.parametrize("layout, expected", [
    ("nchw", lambda a: a.transpose(1, 2, 0)),  # the model's own layout wins
    ("nhwc", lambda a: a)])
def test_an_array_that_fits_two_readings_is_read_in_the_models_layout(layout, expected):
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    options = images.LoadOptions(3, 3, 3, layout=layout)
    np.testing.assert_array_equal(images.load(array, options), expected(array))


@pytest.mark.parametrize("shape", [(2, 299, 1, 299), (1, 300, 299), (5,)])
def test_a_shape_that_fits_no_reading_is_refused_with_the_accepted_shapes(origin_avg, shape):
    with pytest.raises(ImageError) as caught:
        FeatureExtractor(origin_avg, device="cpu").extract(np.zeros(shape, np.float32))
    message = str(caught.value)
    assert "\n" not in message
    assert "(N, 1, 299, 299), (1, 299, 299), (N, 299, 299, 1), (299, 299, 1)" in message


def test_sklearn_transformer_takes_channels_first_arrays(origin, origin_avg):
    from fexport.runtime.image_features import ImageFeatures

    x = _arrays(3, (1, 299, 299), seed=4)
    features = ImageFeatures(str(origin_avg)).fit_transform(x)
    assert_close(features, origin[3].predict(x, verbose=0).mean(axis=(2, 3)))


def test_unsupported_inputs_and_layouts_are_refused_in_one_line(tmp_path):
    keras.utils.set_random_seed(0)
    odd = keras.Sequential([keras.Input((5, 5, 7)), keras.layers.Conv2D(2, 3)])
    odd.save(tmp_path / "odd.keras")
    proc = run_cli("export", tmp_path / "odd.keras", "-o", tmp_path / "o.onnx", check=False)
    assert proc.returncode == 2 and "no channel axis of 1 or 3" in error_line(proc)
    proc = run_cli("export", "vgg16", "--weights", "none", "--layout", "nhw", "-o",
                   tmp_path / "v.onnx", check=False)
    assert proc.returncode == 2 and "--layout nhw is for grayscale models" in error_line(proc)


def test_an_unbuilt_live_model_is_refused_with_the_fix(tmp_path):
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(UsageError, match="keras.Input"):
        fexport.export(model, output=tmp_path / "x.onnx")


def test_the_live_export_result_reads_well_and_serializes(origin, origin_avg, tmp_path):
    model, _, last_pool, _ = origin
    result = fexport.export(model, layer=last_pool, head="max", output=tmp_path / "m.onnx")
    assert repr(result).startswith(f"<exported {model.name} [{last_pool}] + max -> ")
    assert "verification passed" in repr(result) and "features (N, 64)" in repr(result)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["contract"]["source_class"] == "Sequential" and data["verification"]["passed"]
    proc = run_cli("verify", origin_avg, check=False)  # nothing on disk to rebuild it from
    assert proc.returncode == 2 and "in-memory Sequential" in error_line(proc)


def test_keras2_h5_with_channels_first_layers(tmp_path):
    tf_keras.utils.set_random_seed(6)
    model = tf_keras.Sequential([
        tf_keras.layers.Conv2D(8, 3, input_shape=(3, 32, 32), data_format="channels_first",
                               name="conv"),
        tf_keras.layers.MaxPooling2D(2, data_format="channels_first", name="pool"),
        tf_keras.layers.Flatten(), tf_keras.layers.Dense(3)])
    model.save(tmp_path / "cf.h5")
    result = fexport.export(str(tmp_path / "cf.h5"), layer="pool", output=tmp_path / "cf.onnx")
    assert result.contract.input.shape("N") == ("N", 3, 32, 32) and result.report.passed
    x = _arrays(2, (3, 32, 32), seed=7)
    pool = tf_keras.Model(model.inputs, model.get_layer("pool").output)
    assert_close(FeatureExtractor(tmp_path / "cf.onnx", device="cpu").extract(x),
                 pool.predict(x, verbose=0).reshape(2, -1))


def test_a_live_model_keeps_its_own_layer_names(tmp_path):
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv 1"),
                              keras.layers.MaxPooling2D(name="pool:a")])
    result = fexport.export(model, layer="pool:a", head="avg", output=tmp_path / "n.onnx",
                            verify_images=None)
    assert result.report.passed and result.contract.layers == ["pool:a"]
    assert [layer.name for layer in model.layers] == ["conv 1", "pool:a"]
