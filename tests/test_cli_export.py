"""The real CLI in a subprocess: the card's command, layers, penultimate and every error path."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import MNIST_CNN, error_line, run_cli


def test_card_command_gives_25088_features_and_passes(vgg16_onnx):
    session = ort.InferenceSession(str(vgg16_onnx), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape == ["batch", 25088]
    for n in (1, 5):  # dynamic batch
        x = np.random.default_rng(n).uniform(0, 255, (n, 224, 224, 3)).astype(np.float32)
        assert session.run(None, {"images": x})[0].shape == (n, 25088)
    info = json.loads(run_cli("info", vgg16_onnx, "--json").stdout)
    contract = info["contract"]
    assert contract["source"] == "VGG16" and contract["layers"] == ["block5_pool"]
    assert contract["preprocessing"] == "caffe" and contract["preprocessing_baked"] is True
    assert contract["verification"]["passed"] is True and contract["weights"] == "none"


def test_verify_command_rebuilds_keras_from_metadata(vgg16_onnx):
    proc = run_cli("verify", vgg16_onnx)
    assert proc.stdout.count("ok  ") == 2 and "verification passed" in proc.stdout


def test_layers_lists_block5_pool_with_each_head():
    proc = run_cli("layers", "vgg16", "--weights", "none")
    line = next(text for text in proc.stdout.splitlines() if " block5_pool " in text)
    assert line.split()[-5:] == ["25088", "512", "512", "*recommended"] or \
        line.split()[-4:] == ["25088", "512", "512", "*recommended"]
    rows = json.loads(run_cli("layers", "vgg16", "--weights", "none", "--json").stdout)
    fc2 = next(r for r in rows if r["name"] == "fc2")
    assert fc2["flatten"] == 4096 and fc2["avg"] is None and fc2["recommended"]


def test_penultimate_of_vgg16_is_fc2_with_4096_features(tmp_path):
    out = tmp_path / "f.onnx"
    proc = run_cli("vgg16", "--weights", "none", "--layer", "penultimate", "-o", out)
    assert "[fc2]" in proc.stdout and "features (N, 4096)" in proc.stdout
    assert "verification passed" in proc.stdout


def test_explicit_export_command_and_report(tmp_path):
    out, report = tmp_path / "m.onnx", tmp_path / "report.json"
    run_cli("export", MNIST_CNN, "--layer", "max_pooling2d_1", "--head", "avg", "-o", out,
            "--report", report)
    data = json.loads(report.read_text())
    assert data["passed"] and [c["onnx_shape"] for c in data["checks"]] == [[1, 64], [3, 64]]
    before = out.read_bytes()
    again = ["export", MNIST_CNN, "--layer", "dense", "-o", out]
    proc = run_cli(*again, check=False)
    assert proc.returncode == 2 and "already exists; pass --overwrite" in error_line(proc)
    assert out.read_bytes() == before  # refused before anything was loaded or written
    run_cli(*again, "--overwrite")
    assert out.read_bytes() != before


ERRORS = {
    "unknown model": (["resnet5", "-o", "x.onnx"], 1, "Did you mean ResNet50"),
    "unknown layer": (["vgg16", "--weights", "none", "--layer", "block5_pol", "-o", "x.onnx"],
                      1, "Did you mean block5_pool"),
    "index out of range": (["export", str(MNIST_CNN), "--layer", "-40", "-o", "x.onnx"], 1,
                           "out of range: the model has 8 layers"),
    "pooling a vector": (["export", str(MNIST_CNN), "--layer", "dense", "--head", "avg", "-o",
                          "x.onnx"], 1, "already a vector"),
    "bad head": (["export", str(MNIST_CNN), "--head", "median", "-o", "x.onnx"], 2,
                 "expected one of flatten, avg, max, none, cls, mean, cls+mean, pooled"),
    "token head on a CNN": (["export", str(MNIST_CNN), "--layer", "dense", "--head", "mean",
                             "-o", "x.onnx"], 1, "(a vector); heads that do: flatten, none"),
    "no output": (["export", str(MNIST_CNN)], 2, "nothing to write"),
    "imagenet offline": (["vgg16", "-o", "x.onnx"], 1, ".keras/models, or pass --weights none"),
    "caffe on grayscale": (["export", str(MNIST_CNN), "--preprocess", "caffe", "-o", "x.onnx"],
                           2, "needs 3 (RGB) channels"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_with_a_fix(tmp_path, case, monkeypatch):
    args, code, words = ERRORS[case]
    monkeypatch.chdir(tmp_path)
    proc = run_cli(*args, check=False)
    assert proc.returncode == code, proc.stderr
    assert words in error_line(proc)
    assert not (tmp_path / "x.onnx").exists()


def test_imagenet_offline_suggests_alternatives(tmp_path):
    proc = run_cli("vgg16", "-o", tmp_path / "x.onnx", check=False,
                   env={"KERAS_HOME": str(tmp_path / "empty-cache")})
    line = error_line(proc)
    assert "--weights none" in line and "--weights PATH" in line


def test_file_nothing_can_load_names_each_loader(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    line = error_line(run_cli("export", bad, "-o", tmp_path / "x.onnx", check=False))
    assert "broken.h5" in line and ("keras" in line or "HDF5" in line)


def test_debug_env_shows_the_traceback(tmp_path):
    proc = run_cli("resnet5", "-o", tmp_path / "x.onnx", check=False,
                   env={"FEXPORT_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_imagenet_weights_without_network_are_refused_before_tensorflow(tmp_path):
    """Where the weights' host does not resolve (this sandbox, CI), the refusal comes from the
    check before TensorFlow loads: its own words, not Keras's download error."""
    import socket

    from fexport.models.weights import WEIGHTS_HOST

    try:
        socket.getaddrinfo(WEIGHTS_HOST, 443)
        pytest.skip(f"{WEIGHTS_HOST} resolves here: the network is there")
    except socket.gaierror:
        pass
    proc = run_cli("vgg16", "-o", tmp_path / "x.onnx", check=False,
                   env={"KERAS_HOME": str(tmp_path / "keras")})
    assert proc.returncode == 1
    assert "does not resolve" in error_line(proc) and "--weights none" in error_line(proc)
