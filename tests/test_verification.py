"""Verification tells float32 rounding amplified by a model apart from a conversion defect.

EfficientNetV2 built with random weights gets calibrated BatchNorm statistics so that
verifying it means something (V2M/L otherwise amplify rounding to cosine 0.6).
"""

import numpy as np
import onnx
import pytest

from fexport import comparison, models
from fexport.errors import VerificationError
from fexport.exporter import ExportOptions, export
from fexport.exporter.export import verify_file
from fexport.exporter.load import build_registry_model

keras = pytest.importorskip("keras")


def cancelling_convnet(path, left=3e-7):
    """Two convolutions that cancel to `left` of their size: the smaller `left`, the larger
    float32 rounding of each term is against the result (the textbook ill-conditioned sum)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(8, 3, use_bias=False, name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, use_bias=False, name="b")(inputs)
    x = keras.layers.Add(name="cancel")([a, b])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    kernel = model.get_layer("a").get_weights()[0]
    model.get_layer("b").set_weights([-kernel * (1 - left)])
    model.save(path)


def test_rounding_amplified_by_the_model_is_named_as_such(tmp_path):
    path = tmp_path / "cancel.keras"
    cancelling_convnet(path)
    with pytest.raises(VerificationError, match="float32 rounding as this model amplifies it"
                       ) as info:
        export(ExportOptions(str(path), layers=["gap"], output=str(tmp_path / "c.onnx")))
    report = info.value.report
    assert report.rounding_explains and not report.passed and not report.verifiable
    for check in report.checks:
        # Keras against itself under 1e-7 input noise is as far off as ONNX Runtime is.
        assert check.noise_floor.max_rel > comparison.EXPORT_MAX_REL
        assert check.max_rel <= comparison.SENSITIVITY_FACTOR * check.noise_floor.max_rel


def test_differences_within_a_moderate_noise_floor_pass_and_say_so(tmp_path):
    path = tmp_path / "cancel.keras"
    cancelling_convnet(path, left=3e-5)  # rounding moves Keras itself by ~5e-4
    report = export(ExportOptions(str(path), layers=["gap"],
                                  output=str(tmp_path / "c.onnx"))).report
    assert report.passed and report.verifiable
    assert max(c.max_rel for c in report.checks) > comparison.EXPORT_MAX_REL
    lines = [check.line() for check in report.checks]
    assert all("within float32 rounding as this model amplifies it" in line for line in lines)
    assert report.lines() == [*lines, "verification passed"]


def test_a_changed_weight_is_named_a_defect(tmp_path):
    from test_export import tiny_convnet

    source, exported = tmp_path / "tiny.keras", tmp_path / "tiny.onnx"
    tiny_convnet(source)
    export(ExportOptions(str(source), layers=["gap"], output=str(exported)))
    proto = onnx.load(exported)
    biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weight = onnx.numpy_helper.to_array(biggest) * np.float32(1.01)  # a 1% wrong constant
    biggest.CopyFrom(onnx.numpy_helper.from_array(weight, biggest.name))
    onnx.save(proto, exported)
    report = verify_file(exported)
    assert not report.passed and not report.rounding_explains
    worst = max(report.checks, key=lambda c: c.max_rel)
    assert worst.max_rel > 1e3 * worst.noise_floor.max_rel
    assert any("conversion defect" in line for line in report.lines())


def keras_sensitivity(model, seed=1):
    x = np.random.default_rng(seed).integers(0, 256, (2, *model.input_shape[1:]))
    x = x.astype(np.float32)
    noisy = x * (1 + comparison.INPUT_NOISE * np.random.default_rng(seed).standard_normal(
        x.shape)).astype(np.float32)
    a, b = model.predict(x, verbose=0), model.predict(noisy, verbose=0)
    return np.abs(a - b).max() / np.abs(a).max(), np.abs(a).max()


def test_random_weights_get_calibrated_batchnorm():
    spec = models.get("EfficientNetV2M")  # the deepest family: the one that needed it
    model = build_registry_model(spec, "none", False)
    again = build_registry_model(spec, "none", False)
    for w1, w2 in zip(model.get_weights(), again.get_weights()):  # `verify` can rebuild it
        np.testing.assert_array_equal(w1, w2)
    calibrated_rel, calibrated_max = keras_sensitivity(model)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    plain = keras.applications.EfficientNetV2M(weights=None, include_top=False,
                                               input_shape=(*spec.input_size, 3))
    plain_rel, plain_max = keras_sensitivity(plain)
    # Keras's plain init: activations near 1e6 and an output that rounding noise moves by 100%,
    # so no verification could mean anything. Calibrated: it moves by less than the tolerance
    # (measured 2e-5) and verification does.
    assert plain_rel > 0.1 and plain_max > 1e4
    assert calibrated_rel < comparison.EXPORT_MAX_REL and calibrated_max < 100
