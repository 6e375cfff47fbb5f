"""runtime/backends: the rule `choose`, ONNX Runtime and (where installed) OpenVINO against the
numpy reference on the tiny model, and what each says really ran."""

import dataclasses
import warnings

import numpy as np
import pytest

from fexport.errors import DeviceError, FexportError, ModelNotFoundError, UsageError
from fexport.extras import installed
from fexport.runtime import backends, host
from fexport.runtime.backends import Ran, TensorInfo
from fexport.runtime.backends import onnxruntime_backend as ort_backend

# Scale-relative bound between an engine and the float64 numpy reference on the tiny model: a
# 27-term float32 convolution sum then a 256-pixel mean; float32 rounding is ~1e-7 relative
# per step, so 1e-5 leaves room for summation order and fused kernels, and a wrong weight,
# preprocessing or layout misses by 1e-2 or more.
RTOL = 1e-5


def assert_close(actual, expected, rtol=RTOL):
    scale = np.abs(expected).max()
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= rtol * scale, np.abs(actual - expected).max()


@pytest.mark.parametrize("args, expected", [
    (("float32",), ("onnxruntime", "auto", "fp32")),
    (("float32", "auto", "cpu", "fp32"), ("onnxruntime", "cpu", "fp32")),
    (("float32", "openvino"), ("openvino", "cpu", "fp32")),
    (("int8", "onnxruntime", "cpu"), ("onnxruntime", "cpu", "int8")),
    (("int8", "auto", "cuda"), ("onnxruntime", "cuda", "int8")),
    (("fp16", "auto", "cuda"), ("onnxruntime", "cuda", "fp16")),
    (("int8", "auto", "cpu"), (backends.int8_backend(), "cpu", "int8")),
])
def test_the_rule_picks_a_backend(args, expected):
    assert backends.choose(*args) == expected


@pytest.mark.parametrize("args, error, words", [
    (("float32", "tensorrt"), UsageError, "backend 'tensorrt': expected one of auto"),
    (("float32", "auto", "tpu"), DeviceError, "unknown device 'tpu'"),
    (("float32", "auto", "cpu", "int4"), UsageError, "precision 'int4'"),
    (("float32", "openvino", "cuda"), DeviceError, "runs on the CPU here"),
    (("float32", "auto", "cpu", "bf16"), UsageError, "only from a verified bf16 variant"),
    (("int8", "auto", "cpu", "fp32"), UsageError, "would need its float32 original"),
    (("bf16", "onnxruntime", "cpu"), DeviceError, "use backend='openvino'"),
    (("int8-bf16", "auto", "cuda"), DeviceError, "OpenVINO's CPU plugin"),
])
def test_the_rule_refuses_what_cannot_run(args, error, words):
    with pytest.raises(error, match=words):
        backends.choose(*args)


def test_bf16_follows_the_cpus_hardware():
    if host.native_bf16():
        assert backends.choose("bf16") == ("openvino", "cpu", "bf16")
        assert backends.choose("int8-bf16", precision="auto") == ("openvino", "cpu", "int8-bf16")
    else:
        with pytest.raises(DeviceError, match="no bf16 in hardware"):
            backends.choose("bf16")


def test_int8_goes_to_openvino_only_with_fast_int8_and_openvino():
    expected = "openvino" if host.fast_int8() and installed("openvino") else "onnxruntime"
    assert backends.int8_backend() == expected


def test_a_file_optimized_for_openvino_follows_it_or_says_why_not():
    with pytest.warns(RuntimeWarning, match="does not run on CUDA"):
        assert backends.choose("float32", device="cuda", preferred="openvino")[0] == \
            "onnxruntime"
    if installed("openvino"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert backends.choose("float32", preferred="openvino") == \
                ("openvino", "cpu", "fp32")
    else:
        with pytest.warns(RuntimeWarning, match="is not installed"):
            assert backends.choose("float32", preferred="openvino")[0] == "onnxruntime"


def test_onnxruntime_runs_the_tiny_model_like_the_reference(tiny_model, pixels,
                                                            expected_features):
    engine = backends.open_backend(tiny_model, device="cpu", threads=1)
    assert engine.ran == Ran("onnxruntime", "cpu", "fp32") and str(engine.ran) == \
        "onnxruntime cpu fp32"
    assert engine.inputs == [TensorInfo("images", "tensor(float)", ["N", 16, 16, 3])]
    assert engine.outputs == [TensorInfo("features", "tensor(float)", ["N", 4])]
    assert_close(engine.run(pixels), expected_features(pixels))
    assert engine.session.get_providers() == ["CPUExecutionProvider"]


def test_openvino_runs_the_tiny_model_like_the_reference(tiny_model, pixels, expected_features):
    pytest.importorskip("openvino")
    from fexport.runtime.backends.openvino_backend import runtime_precisions

    engine = backends.open_backend(tiny_model, backend="openvino", threads=1)
    assert engine.ran == Ran("openvino", "cpu", "fp32")
    assert engine.inputs[0].name == "images" and engine.inputs[0].shape == [None, 16, 16, 3]
    assert "bf16" not in runtime_precisions(engine.compiled)  # fp32 asked, fp32 ran
    assert_close(engine.run(pixels), expected_features(pixels))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_each_backends_bare_call_computes_what_run_does(tiny_model, pixels, backend):
    """One interface: bench times the engine's own API through bare_call, whatever it is."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    engine = backends.open_backend(tiny_model, backend=backend, device="cpu", threads=1)
    assert isinstance(engine, backends.Backend)
    bare = np.asarray(engine.bare_call()(pixels))
    assert_close(bare.reshape(engine.run(pixels).shape), engine.run(pixels))


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_cuda_that_does_not_load_is_an_error_not_a_silent_cpu(tiny_model):
    if backends.cuda_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match="device 'cuda' requested"):
        backends.open_backend(tiny_model, device="cuda")


def test_files_that_are_not_models_are_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        backends.check_model_file(tmp_path / "none.onnx")
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        backends.check_model_file(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01 this is no graph")
    with pytest.raises(FexportError, match="onnxruntime cannot load it as an ONNX model"):
        backends.open_backend(junk, device="cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        ort_backend.open_session(junk, "gpu")


def test_sessions_leave_idle_cores_to_decoding_and_cpu_sessions_use_them_all():
    ort = ort_backend.onnxruntime()
    on_cuda = ort_backend._options(ort, None, on_cuda=True)
    assert on_cuda.intra_op_num_threads == 1
    assert on_cuda.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    on_cpu = ort_backend._options(ort, None, on_cuda=False)
    assert on_cpu.intra_op_num_threads == 0  # all
    # No spinning on CPUs either: idle threads spinning take the cores decoding images.
    assert on_cpu.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert ort_backend._options(ort, 3, on_cuda=True).intra_op_num_threads == 3  # as asked


def test_fp32_on_cuda_means_fp32_and_fp16_runs_nhwc():
    assert ort_backend.CUDA_OPTIONS["use_tf32"] == "0"  # TF32 would be a silent 10-bit mantissa
    assert ort_backend.CUDA_FP16_OPTIONS == {**ort_backend.CUDA_OPTIONS, "prefer_nhwc": "1"}


def test_auto_opens_int8_on_onnxruntime_when_openvino_would_run_none_of_it_in_int8(
        tiny_model, pixels, expected_features, monkeypatch):
    """A file said to be INT8 with nothing in INT8 (NNCF's accuracy control can put every
    operation back in float): where OpenVINO is the INT8 engine, backend "auto" warns and runs
    it on ONNX Runtime; backend "openvino", asked by name, still refuses."""
    pytest.importorskip("openvino")
    from fexport.runtime.contract import stored_contract

    monkeypatch.setattr(backends, "int8_backend", lambda: "openvino")  # a VNNI or AMX host
    contract = dataclasses.replace(stored_contract(tiny_model), precision="int8")
    with pytest.warns(RuntimeWarning, match="no kernel runs in int8.*on ONNX Runtime instead"):
        engine = backends.open_backend(tiny_model, contract, threads=1)
    assert engine.ran.backend == "onnxruntime"
    assert_close(engine.run(pixels), expected_features(pixels))
    with pytest.raises(DeviceError, match="no kernel runs in int8"):
        backends.open_backend(tiny_model, contract, backend="openvino", threads=1)
