"""Each install tier does what it promises and says what is missing in one line: a bare
install (no extra), the runtime alone (cpu) and the runtime with quantize, each stood for by a
fresh interpreter in which the packages that tier lacks cannot be imported."""

import pytest

import blocking
from blocking import BARE, CPU, CPU_QUANTIZE
from conftest import error_line

EXPORT_LINE = 'pip install "fexport[export]"'
RUNTIME_LINE = 'pip install "fexport[cpu]" (or "fexport[gpu]"'


def _refused(proc, install_line):
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc)
    assert install_line in line and "please report" not in line
    return line


@pytest.mark.parametrize("args", [["--help"], ["models"], ["export", "--help"]])
def test_bare_install_helps_and_lists_models(args):
    proc = blocking.run_cli(BARE, *args)
    assert proc.returncode == 0, proc.stderr
    assert "VGG16" in proc.stdout or "Usage" in proc.stdout


def test_bare_install_doctor_says_what_each_extra_would_add():
    proc = blocking.run_cli(BARE, "doctor")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime   not installed" in proc.stdout
    assert f"extra cpu       missing onnxruntime: {RUNTIME_LINE}" in proc.stdout
    assert f"missing tensorflow, keras, tf_keras, tf2onnx, onnx: {EXPORT_LINE}" in proc.stdout
    assert "adds export, layers, verify" in proc.stdout
    assert 'extra gpu       missing onnxruntime-gpu: pip install "fexport[gpu]"' in proc.stdout


@pytest.mark.parametrize("command", [["extract", "m.onnx", "photos", "-o", "f.npy"],
                                     ["info", "m.onnx"], ["bench", "m.onnx"]])
def test_bare_install_runtime_commands_name_the_runtime_extras(resnet8_onnx, photos, command,
                                                               tmp_path):
    named = {"m.onnx": resnet8_onnx, "photos": photos, "f.npy": tmp_path / "f.npy"}
    command = [str(named.get(a, a)) for a in command]
    _refused(blocking.run_cli(BARE, *command), RUNTIME_LINE)


@pytest.mark.parametrize("command", [
    ["vgg16", "--layer", "block5_pool", "--head", "flatten", "-o", "vgg16_feat.onnx"],
    ["layers", "vgg16"], ["verify", "m.onnx"], ["bench", "m.onnx", "--compare-keras"]])
def test_runtime_install_export_commands_name_the_export_extra(resnet8_onnx, command, tmp_path):
    command = [str(resnet8_onnx) if a == "m.onnx" else a for a in command]
    command = [str(tmp_path / a) if a.endswith("_feat.onnx") else a for a in command]
    line = _refused(blocking.run_cli(CPU, *command), EXPORT_LINE)
    assert "tensorflow" in line


def test_runtime_install_extracts_and_benches(resnet8_onnx, photos, tmp_path):
    out = tmp_path / "f.npy"
    proc = blocking.run_cli(CPU, "extract", resnet8_onnx, photos, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "extracted 9 of 9 images" in proc.stdout
    proc = blocking.run_cli(CPU, "bench", resnet8_onnx, "--batch-sizes", "1", "--iters", "2")
    assert proc.returncode == 0, proc.stderr
    assert "images/s" in proc.stdout


def test_runtime_install_quantize_names_its_small_extra(resnet8_onnx, photos, tmp_path):
    proc = blocking.run_cli(CPU, "quantize", resnet8_onnx, "--calibration-images", photos,
                            "-o", tmp_path / "q.onnx")
    line = _refused(proc, 'pip install "fexport[quantize]"')
    assert "INT8 quantization needs onnx" in line


def test_runtime_with_quantize_extra_quantizes_without_tensorflow(resnet8_onnx, photos,
                                                                 tmp_path):
    int8, fp16 = tmp_path / "q.int8.onnx", tmp_path / "q.fp16.onnx"
    proc = blocking.run_cli(CPU_QUANTIZE, "quantize", resnet8_onnx, "--calibration-images",
                            photos, "-o", int8, "--min-cosine", "0")
    assert proc.returncode == 0, proc.stderr
    assert int8.exists() and "cosine min" in proc.stdout
    proc = blocking.run_cli(CPU_QUANTIZE, "convert", resnet8_onnx, "--fp16", "--eval-images",
                            photos, "-o", fp16)
    assert proc.returncode == 0, proc.stderr
    assert fp16.exists()
