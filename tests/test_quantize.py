"""INT8 and FP16 variants: built from real images, judged against float32 on other images, read by
the runtime like any other artifact. The real pretrained mini-Xception keeps its features."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps

from conftest import MINI_XCEPTION, error_line, run_cli
from fexport.comparison import row_cosines
from fexport.exporter import ExportOptions, export
from fexport.runtime import FeatureExtractor
from fexport.runtime.contract import METADATA_KEY, stored_contract

CLASSES = {"astronaut": "astronaut.png", "cat": "chelsea.png", "coffee": "coffee.png"}


def crops(photo, count, seed):
    """Different crops (and mirror images) of one real photo: a class of similar images."""
    rng = np.random.default_rng(seed)
    with Image.open(photo) as image:
        image = image.convert("RGB")
        w, h = image.size
        for i in range(count):
            side = int(min(w, h) * rng.uniform(0.5, 0.9))
            x, y = rng.integers(0, w - side), rng.integers(0, h - side)
            crop = image.crop((x, y, x + side, y + side))
            yield ImageOps.mirror(crop) if i % 2 else crop


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory, photos):
    """calibration/ (24 images) and evaluation/<class>/ (5 per class), never the same crops."""
    root = tmp_path_factory.mktemp("quant_images")
    for label, name in CLASSES.items():
        for split, count, seed in (("calibration", 8, 0), (f"evaluation/{label}", 5, 1)):
            folder = root / split
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(crops(photos / name, count, seed)):
                crop.save(folder / f"{label}_{i}.jpg", quality=92)
    return root / "calibration", root / "evaluation"


@pytest.fixture(scope="module")
def xception_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("xception") / "fer.onnx"
    export(ExportOptions(str(MINI_XCEPTION), layers=["add_4"], head="avg", preprocess="tf",
                         output=str(path)))
    return path


def contract_of(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY]), session


def quality_of(path):
    """The variant's quality report, read back from its contract as the runtime reads it."""
    return stored_contract(path).quantization


def cosines(fp32_path, other_path, folder):
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    return row_cosines(FeatureExtractor(fp32_path, device="cpu").extract(paths),
                       FeatureExtractor(other_path, device="cpu").extract(paths))


def test_int8_of_a_real_pretrained_model_keeps_its_features(xception_onnx, image_sets,
                                                            tmp_path):
    calibration, evaluation = image_sets
    out = tmp_path / "fer.int8.onnx"
    proc = run_cli("quantize", xception_onnx, "--calibration-images", calibration,
                   "--eval-images", evaluation, "-o", out)
    contract, session = contract_of(out)
    report = quality_of(out)
    assert contract["precision"] == "int8" and contract["feature_dim"] == 128
    assert contract["quantization"]["passed"] is True  # in the stored JSON too, for readers
    assert report.passed and report.images == 15 and report.calibration_samples == 24
    assert report.min_cosine >= 0.99 and 0 <= report.neighbour_overlap <= 1
    assert report.neighbours == 5
    assert None not in (report.probe_accuracy_float32, report.probe_accuracy_candidate)
    assert any(node.op_type == "QuantizeLinear" for node in _graph(out).node)
    assert session.get_inputs()[0].type == "tensor(float)"
    # Recomputed here, independently of the report: the runtime reads the INT8 file as usual.
    assert cosines(xception_onnx, out, evaluation).min() == pytest.approx(
        report.min_cosine, abs=1e-6)
    assert "nearest-5 overlap" in proc.stdout and "logistic regression" in proc.stdout
    # Its strided 1x1 shortcuts were subsampled by a quantized Slice (precision/rewrites.py).
    slices = [n for n in _graph(out).node if n.op_type == "Slice"]
    assert len(slices) == 4 and all(n.name.startswith("fexport_subsample_") for n in slices)


def test_strided_pointwise_convs_become_exact_slices(xception_onnx, tmp_path):
    import onnx

    from fexport.precision.rewrites import strided_pointwise_as_slices

    model = onnx.load(str(xception_onnx))
    assert strided_pointwise_as_slices(model) == 4  # the four residual shortcuts
    onnx.save(model, str(tmp_path / "sliced.onnx"))
    pixels = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 1)).astype(np.float32)
    before = FeatureExtractor(xception_onnx, "cpu").predict(pixels)
    after = FeatureExtractor(tmp_path / "sliced.onnx", "cpu").predict(pixels)
    # The same pixels meet the same weights; only the kernels' summation order differs
    # (float32 rounding, measured near 2e-7 relative).
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_the_caffe_channel_flip_folds_into_the_first_convolution(vgg16_onnx, xception_onnx,
                                                                 tmp_path):
    import onnx

    from fexport.precision.rewrites import channel_order_into_first_conv

    model = onnx.load(str(vgg16_onnx))
    assert channel_order_into_first_conv(model)
    assert "Gather" not in {n.op_type for n in model.graph.node}
    onnx.save(model, str(tmp_path / "folded.onnx"))
    pixels = np.random.default_rng(4).integers(0, 256, (2, 224, 224, 3)).astype(np.float32)
    before = FeatureExtractor(vgg16_onnx, "cpu").predict(pixels)
    after = FeatureExtractor(tmp_path / "folded.onnx", "cpu").predict(pixels)
    # The same products, summed in another order: float32 rounding (measured 2e-7 relative).
    assert np.abs(after - before).max() <= 1e-5 * np.abs(before).max()
    assert not channel_order_into_first_conv(onnx.load(str(xception_onnx)))  # no flip there


def test_fp16_is_judged_where_it_runs_and_the_cpu_variants_on_the_cpu():
    from fexport.precision.quantize import judging_device
    from fexport.runtime.backends import cuda_available

    assert judging_device("fp16") == ("cuda" if cuda_available() else "cpu")
    assert {judging_device(p) for p in ("int8", "bf16", "int8-bf16")} == {"cpu"}


def _graph(path):
    import onnx

    return onnx.load(str(path)).graph


def test_cosine_below_the_threshold_fails_and_keeps_the_file(xception_onnx, image_sets,
                                                             tmp_path):
    calibration, evaluation = image_sets
    out = tmp_path / "strict.int8.onnx"
    proc = run_cli("quantize", xception_onnx, "--calibration-images", calibration,
                   "--eval-images", evaluation, "-o", out, "--min-cosine", "0.99999999",
                   "--method", "minmax", check=False)
    assert proc.returncode == 1 and "fall to cosine" in error_line(proc)
    assert out.exists() and quality_of(out).passed is False


@pytest.mark.parametrize("method", ["nncf", "nncf-accuracy"])
def test_nncf_int8_is_judged_by_the_same_gate(method, xception_onnx, image_sets, tmp_path):
    """NNCF's INT8 is one more method, judged on the held-out images like the others. At a
    gate of 0.99999999 plain NNCF is refused (exit 1, the file kept for inspection);
    accuracy control reaches it only by putting operations back in float, and says which."""
    calibration, evaluation = image_sets
    out = tmp_path / f"{method}.int8.onnx"
    proc = run_cli("quantize", xception_onnx, "--calibration-images", calibration,
                   "--eval-images", evaluation, "-o", out, "--min-cosine", "0.99999999",
                   "--method", method, check=False)
    assert out.exists(), proc.stdout + proc.stderr  # a refused variant is kept, to inspect
    report = quality_of(out)
    assert report.method.startswith("NNCF post-training")
    # The judge's number is the runtime's: recomputed here from the two files.
    assert cosines(xception_onnx, out, evaluation).min() == pytest.approx(
        report.min_cosine, abs=1e-6)
    assert report.passed == (report.min_cosine >= 0.99999999)
    if method == "nncf":
        assert proc.returncode == 1 and "fall to cosine" in error_line(proc)
        assert not report.passed and not report.kept_float
    else:
        assert proc.returncode == (0 if report.passed else 1)
        weighted = [n for n in _graph(out).node if n.op_type == "Conv"]
        assert 0 < len(report.kept_float) <= len(weighted)


def test_fp16_keeps_float32_inputs_and_outputs(xception_onnx, image_sets, tmp_path):
    _, evaluation = image_sets
    out = tmp_path / "fer.fp16.onnx"
    run_cli("convert", xception_onnx, "--fp16", "--eval-images", evaluation, "-o", out)
    contract, session = contract_of(out)
    assert contract["precision"] == "fp16"
    # FP16 keeps ~3 decimal digits per value; features stay within 1e-4 of cosine 1.
    assert quality_of(out).min_cosine >= 0.9999
    assert [i.type for i in session.get_inputs() + session.get_outputs()] == [
        "tensor(float)", "tensor(float)"]
    assert any(t.data_type == 10 for t in _graph(out).initializer)  # FLOAT16 weights


def test_calibration_and_evaluation_images_must_differ(xception_onnx, image_sets, tmp_path):
    calibration, _ = image_sets
    proc = run_cli("quantize", xception_onnx, "--calibration-images", calibration,
                   "--eval-images", calibration, "-o", tmp_path / "x.onnx", check=False)
    assert proc.returncode == 2 and "both calibration and evaluation" in error_line(proc)


def test_export_time_int8_and_bench_variant(image_sets, tmp_path):
    calibration, _ = image_sets  # 24 images: 16 calibrate, a third (8) judge
    out = tmp_path / "fer.onnx"
    run_cli("export", MINI_XCEPTION, "--layer", "add_4", "--head", "avg", "--preprocess", "tf",
            "-o", out, "--int8", "--calibration-images", calibration)
    int8 = tmp_path / "fer.int8.onnx"
    report = quality_of(int8)
    assert (report.calibration_samples, report.images) == (16, 8) and report.passed
    proc = run_cli("bench", out, "--variant", int8, "--batch-sizes", "2", "--iters", "2",
                   "--json")
    assert [r["runtime"] for r in json.loads(proc.stdout)["results"]] == [
        "onnxruntime", "onnxruntime int8"]


def _scales(path) -> dict:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return {t.name: numpy_helper.to_array(t).ravel()[0] for t in graph.initializer
            if t.name.endswith("_scale")}


def test_entropy_searches_its_thresholds_and_differs_from_minmax(xception_onnx, image_sets,
                                                                 tmp_path):
    """quantize_static alone gives entropy minmax's ranges (one candidate threshold); fexport's
    own 2048-bin entropy calibration clips the long tails of the real model's activations."""
    calibration, evaluation = image_sets
    found = {}
    for method in ("minmax", "entropy"):
        out = tmp_path / f"{method}.onnx"
        run_cli("quantize", xception_onnx, "--calibration-images", calibration,
                "--eval-images", evaluation, "-o", out, "--method", method, "--min-cosine", "0")
        found[method] = _scales(out)
    shared = set(found["minmax"]) & set(found["entropy"])
    clipped = [name for name in shared if found["entropy"][name] < found["minmax"][name]]
    assert len(shared) > 20 and len(clipped) >= len(shared) // 4
    assert quality_of(tmp_path / "entropy.onnx").method.endswith("entropy")
