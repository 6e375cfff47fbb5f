"""runtime/backends/tensorrt_provider.py: the providers and options a TensorRT session asks for,
the engine cache keyed by the file's SHA-256, and the truth when TensorRT is not what runs.
This host has no GPU: what is tested is what fexport decides and says, on the real
onnxruntime installed here."""

import hashlib

import pytest

from fexport.errors import DeviceError
from fexport.runtime import backends
from fexport.runtime.backends import onnxruntime_backend as ort_backend
from fexport.runtime.backends import tensorrt_provider as trt

CUDA = (ort_backend.CUDA, ort_backend.CUDA_OPTIONS)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(trt.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "tensorrt"


@pytest.mark.parametrize("precision, fp16, int8", [
    ("fp32", False, False),  # a float32 file builds a float32 engine: FP16 is never silent
    ("fp16", True, False),   # the verified FP16 variant
    ("int8", False, True),   # a QDQ file: INT8 from its own scales, float parts in float32
])
def test_each_precision_asks_tensorrt_for_its_own_kernels(tmp_path, precision, fp16, int8):
    options = trt.provider_options(precision, tmp_path / "abc")
    assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == (fp16, int8)
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "abc")
    assert options["trt_timing_cache_enable"] is True
    assert options["trt_timing_cache_path"] == str(tmp_path / "timing")  # shared by all files


@pytest.mark.parametrize("precision", ["bf16", "int8-bf16", "float32"])
def test_precisions_tensorrt_is_not_given_are_refused(tmp_path, precision):
    with pytest.raises(DeviceError, match=f"precision '{precision}' on device 'tensorrt'"):
        trt.provider_options(precision, tmp_path)


def test_the_session_asks_for_tensorrt_then_cuda_then_the_cpu(tiny_model, cache_dir):
    found = trt.providers(tiny_model, "fp16", CUDA, ort_backend.CPU)
    assert [p if isinstance(p, str) else p[0] for p in found] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert found[1] == CUDA and found[0][1]["trt_fp16_enable"] is True
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert found[0][1]["trt_engine_cache_path"] == str(cache_dir / digest)


def test_the_cache_follows_fexport_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FEXPORT_CACHE_DIR", str(tmp_path / "f"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert trt.cache_root() == tmp_path / "f" / "tensorrt"
    monkeypatch.delenv("FEXPORT_CACHE_DIR")
    assert trt.cache_root() == tmp_path / "x" / "fexport" / "tensorrt"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset, as the XDG spec says
    assert trt.cache_root() == tmp_path / "h" / ".cache" / "fexport" / "tensorrt"


def test_the_engine_folder_is_the_files_sha256_and_changes_with_it(tmp_path, cache_dir):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"first version")
    first = trt.cache_folder(model)
    assert first == cache_dir / hashlib.sha256(b"first version").hexdigest()
    model.write_bytes(b"the second, longer version")  # same name, another engine
    assert trt.cache_folder(model) == \
        cache_dir / hashlib.sha256(b"the second, longer version").hexdigest()


@pytest.mark.parametrize("args, expected", [
    (("float32", "auto", "tensorrt"), ("onnxruntime", "tensorrt", "fp32")),
    (("fp16", "auto", "tensorrt"), ("onnxruntime", "tensorrt", "fp16")),
    (("int8", "auto", "tensorrt"), ("onnxruntime", "tensorrt", "int8")),  # never OpenVINO
])
def test_the_rule_sends_tensorrt_to_onnxruntime(args, expected):
    assert backends.choose(*args) == expected


@pytest.mark.parametrize("args, words", [
    (("float32", "openvino", "tensorrt"), "for device 'tensorrt' use backend='onnxruntime'"),
    (("bf16", "auto", "tensorrt"), "OpenVINO's CPU plugin"),
])
def test_the_rule_refuses_tensorrt_where_it_cannot_run(args, words):
    with pytest.raises(DeviceError, match=words):
        backends.choose(*args)


def test_a_file_optimized_for_openvino_runs_on_onnxruntime_under_tensorrt():
    with pytest.warns(RuntimeWarning, match="does not run on CUDA"):
        assert backends.choose("float32", device="tensorrt", preferred="openvino") == \
            ("onnxruntime", "tensorrt", "fp32")


def test_tensorrt_that_is_not_there_is_an_error_naming_the_extra(tiny_model):
    if backends.tensorrt_available():
        pytest.skip("this onnxruntime has the TensorRT provider")
    with pytest.raises(DeviceError) as caught:
        backends.open_backend(tiny_model, device="tensorrt")
    message = str(caught.value)
    assert message.startswith("device 'tensorrt' requested but this onnxruntime has no TensorRT "
                              "provider (it offers ")
    assert "CPUExecutionProvider" in message
    assert message.endswith('Fix: pip install "fexport[tensorrt]", or use --device cuda.')


def test_a_provider_that_did_not_load_says_why_and_how_to_fix_it():
    message = str(trt.did_not_load(["CUDAExecutionProvider", "CPUExecutionProvider"]))
    assert "the session could not use it" in message and "libnvinfer.so.10" in message
    assert "run `fexport doctor`" in message
    assert "(the session got CUDAExecutionProvider, CPUExecutionProvider)" in message
    assert message.endswith('pip install "fexport[tensorrt]", or use --device cuda.')


def test_without_the_wheel_nothing_is_preloaded(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(tmp_path))  # an empty path entry: still no tensorrt_libs
    if trt.wheel_folder() is not None:
        pytest.skip("TensorRT's wheel is installed here")
    assert trt.preload() == []
