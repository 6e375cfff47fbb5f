"""Backends: the rule that picks one, the truth about what ran, OpenVINO against ONNX Runtime on
the same file and real photos, bf16 as a verified variant, and `bench --backends all`."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import error_line, run_cli
from fexport.errors import DeviceError, UsageError
from fexport.runtime import FeatureExtractor, backends, host
from fexport.runtime.backends.openvino_backend import runtime_precisions

pytest.importorskip("openvino")

# Scale-relative bound between two float32 engines on one file: the same tolerance the export
# is verified with (float32 sums in another order; measured 3e-7 on ResNet-8).
RTOL = 1e-4


@pytest.mark.parametrize("file, backend, device, precision, expected", [
    ("float32", "auto", "auto", "auto", ("onnxruntime", "auto", "fp32")),
    ("float32", "auto", "cpu", "fp32", ("onnxruntime", "cpu", "fp32")),
    ("float32", "openvino", "auto", "auto", ("openvino", "cpu", "fp32")),
    ("int8", "auto", "cpu", "auto", (backends.int8_backend(), "cpu", "int8")),
    ("int8", "onnxruntime", "cpu", "auto", ("onnxruntime", "cpu", "int8")),
    ("fp16", "auto", "cuda", "auto", ("onnxruntime", "cuda", "fp16")),
])
def test_the_rule_picks_a_backend(file, backend, device, precision, expected):
    assert backends.choose(file, backend, device, precision) == expected


@pytest.mark.parametrize("file, backend, device, precision, error, words", [
    ("float32", "auto", "cpu", "bf16", UsageError, "only from a verified bf16 variant"),
    ("int8", "auto", "cpu", "fp32", UsageError, "open that file instead"),
    ("bf16", "onnxruntime", "cpu", "auto", DeviceError, "use backend='openvino'"),
    ("float32", "openvino", "cuda", "auto", DeviceError, "runs on the CPU here"),
    ("float32", "tensorrt", "cpu", "auto", UsageError, "expected one of auto, onnxruntime"),
])
def test_requests_that_cannot_be_met_say_why_and_how(file, backend, device, precision, error,
                                                     words):
    with pytest.raises(error, match=words.replace("(", r"\(")):
        backends.choose(file, backend, device, precision)


def test_int8_goes_to_openvino_where_amx_or_vnni_is(monkeypatch):
    monkeypatch.setattr(host, "fast_int8", lambda: True)  # AMX or AVX-512 VNNI
    assert backends.choose("int8") == ("openvino", "cpu", "int8")
    monkeypatch.setattr(host, "fast_int8", lambda: False)  # neither: not measured faster
    assert backends.choose("int8") == ("onnxruntime", "auto", "int8")


@pytest.mark.parametrize("file", ["bf16", "int8-bf16"])
def test_bf16_follows_the_host(monkeypatch, file):
    if host.native_bf16():
        assert backends.choose(file) == ("openvino", "cpu", file)
    with pytest.raises(DeviceError, match="runs on OpenVINO's CPU plugin"):
        backends.choose(file, backend="onnxruntime")
    monkeypatch.setattr(host, "native_bf16", lambda: False)  # a CPU without AMX/AVX-512 BF16
    with pytest.raises(DeviceError, match="no bf16 in hardware"):
        backends.choose(file)


@pytest.fixture(scope="module")
def openvino_extractor(resnet8_onnx):
    return FeatureExtractor(resnet8_onnx, device="cpu", backend="openvino")


def test_fp32_means_fp32_on_openvino(openvino_extractor):
    assert str(openvino_extractor.ran) == "openvino cpu fp32"
    # Read from the compiled graph: no kernel in bf16 even where bf16 is OpenVINO's default.
    assert "bf16" not in runtime_precisions(openvino_extractor.engine.compiled)


def test_openvino_and_onnxruntime_agree_on_real_photos(openvino_extractor, resnet8_onnx,
                                                       photo_paths):
    reference = FeatureExtractor(resnet8_onnx, device="cpu")
    assert str(reference.ran) == "onnxruntime cpu fp32"
    expected, actual = reference.extract(photo_paths), openvino_extractor.extract(photo_paths)
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


def test_an_openvino_extractor_survives_pickling(openvino_extractor, photo_paths):
    again = pickle.loads(pickle.dumps(openvino_extractor))
    assert again.ran == openvino_extractor.ran
    np.testing.assert_array_equal(again.extract(photo_paths[:3]),
                                  openvino_extractor.extract(photo_paths[:3]))


def test_the_default_backend_does_not_import_openvino(resnet8_onnx):
    probe = ("import sys\nfrom fexport.runtime import FeatureExtractor\n"
             f"e = FeatureExtractor({str(resnet8_onnx)!r}, device='cpu')\n"
             "print(e.ran, 'openvino' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.stdout.strip() == "onnxruntime cpu fp32 False", proc.stderr


@pytest.fixture(scope="module")
def bf16_variant(resnet8_onnx, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "resnet8.bf16.onnx"
    proc = run_cli("convert", resnet8_onnx, "--bf16", "--eval-images", photos, "-o", out,
                   check=False)
    return out, proc


def test_a_bf16_variant_is_judged_and_runs_in_bf16(bf16_variant):
    out, proc = bf16_variant
    if not host.native_bf16():
        assert proc.returncode == 1 and "no bf16 in hardware" in error_line(proc)
        return
    assert proc.returncode == 0, proc.stderr
    extractor = FeatureExtractor(out, device="cpu")
    report = extractor.contract.quantization
    assert str(extractor.ran) == "openvino cpu bf16" and extractor.contract.precision == "bf16"
    assert report.measured_on == "openvino cpu bf16" and report.images == 9
    # bf16 keeps 8 bits of mantissa: features stay within cosine 0.99 (the INT8/FP16 gate).
    assert report.passed and report.min_cosine >= 0.99
    assert "bf16" in runtime_precisions(extractor.engine.compiled)


def _quantize_int8_bf16(resnet8_onnx, photos, folder, keep_float):
    from fexport.precision import imagesets, quantize

    sets = imagesets.from_folders(str(photos), None, 64, "int8-bf16")
    options = quantize.QuantizeOptions(str(resnet8_onnx), str(folder / "r8.int8-bf16.onnx"),
                                       "int8-bf16", sets.calibration, 64, "percentile",
                                       sets.evaluation, nodes_to_exclude=keep_float)
    return options.output, quantize.quantize(options)


def test_int8_with_bf16_float_parts_is_judged_and_runs_so(resnet8_onnx, photos, tmp_path):
    onnx = pytest.importorskip("onnx")
    convs = [n.name for n in onnx.load(resnet8_onnx).graph.node if n.op_type == "Conv"]
    if not host.native_bf16():
        with pytest.raises(DeviceError, match="no bf16 in hardware"):
            _quantize_int8_bf16(resnet8_onnx, photos, tmp_path, convs[:1])
        return
    # With every convolution in INT8, OpenVINO leaves nothing of ResNet-8 in float: refused.
    with pytest.raises(DeviceError, match="left nothing of this INT8 file in float"):
        _quantize_int8_bf16(resnet8_onnx, photos, tmp_path, [])
    # The first convolution kept in float runs in bf16, the rest in INT8, and the report says so.
    out, report = _quantize_int8_bf16(resnet8_onnx, photos, tmp_path, convs[:1])
    extractor = FeatureExtractor(out, device="cpu")
    assert str(extractor.ran) == "openvino cpu int8-bf16" == report.measured_on
    assert {"bf16", "u8"} <= runtime_precisions(extractor.engine.compiled)
    # The INT8 gate: 8-bit activations dominate the error, bf16's 8-bit mantissa adds little.
    assert extractor.contract.quantization.passed and report.min_cosine >= 0.99
    assert list(extractor.contract.quantization.kept_float) == convs[:1]


def test_bench_times_every_backend_beside_its_bare_api(resnet8_onnx, bf16_variant):
    variants = ["--variant", bf16_variant[0]] if host.native_bf16() else []
    proc = run_cli("bench", resnet8_onnx, *variants, "--backends", "all", "--batch-sizes", "2",
                   "--iters", "2", "--json")
    data = json.loads(proc.stdout)
    names = [r["runtime"] for r in data["results"]]
    for ran in ("onnxruntime cpu fp32", "openvino cpu fp32"):
        assert f"fexport {ran}" in names and f"bare {ran}" in names
    if host.native_bf16():
        assert "fexport openvino cpu bf16" in names
        assert any(s["backend"] == "onnxruntime" and "bf16" in s["reason"]
                   for s in data["skipped"])
    assert data["machine"]["cpu_flags"] == host.precision_flags()


def test_an_optimized_file_follows_its_backend_or_says_why_not():
    assert backends.choose("int8", preferred="openvino", device="cpu")[0] == "openvino"
    with pytest.warns(RuntimeWarning, match="does not run on CUDA"):
        assert backends.choose("int8", preferred="openvino", device="cuda")[0] == "onnxruntime"
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        backends.choose("float32", device="gpu")
