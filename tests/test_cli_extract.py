"""`fexport extract`, `info` and `doctor` through the real CLI: formats, bad files, exit codes."""

import os

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, error_line, run_cli
from readback import read_features


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photo_paths):
    """Good photos plus every kind of bad input, built here rather than shipped."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in photo_paths[:3]:
        (folder / path.rsplit("/", 1)[-1]).write_bytes(open(path, "rb").read())
    jpeg = open([p for p in photo_paths if p.endswith(".jpg")][0], "rb").read()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, not a picture\n")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 4])
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "tiny.png")
    return folder


def test_npz_records_features_paths_and_failures(resnet8_onnx, mixed_folder, tmp_path):
    out = tmp_path / "f.npz"
    proc = run_cli("extract", resnet8_onnx, mixed_folder, "-o", out)
    data = np.load(out)
    good = sorted(str(p) for p in mixed_folder.iterdir()
                  if p.name not in ("empty.jpg", "text.jpg", "truncated.jpg"))
    assert list(data["paths"]) == good and data["features"].shape == (4, 64)
    reasons = dict(zip(data["failed_paths"], data["failed_reasons"]))
    assert set(reasons) == {str(mixed_folder / n) for n in ("empty.jpg", "text.jpg",
                                                               "truncated.jpg")}
    assert "empty" in reasons[str(mixed_folder / "empty.jpg")]
    assert "truncated" in reasons[str(mixed_folder / "truncated.jpg")]
    assert "extracted 4 of 7 images" in proc.stdout and proc.stderr.count("skipped") == 3
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_other_formats_hold_the_same_features(resnet8_onnx, photos, tmp_path, suffix):
    reference = tmp_path / "ref.npz"
    run_cli("extract", resnet8_onnx, photos, "-o", reference)
    ref = np.load(reference)
    out = tmp_path / f"f{suffix}"
    run_cli("extract", resnet8_onnx, photos, "-o", out, "--batch-size", "3")
    paths, features, failures = read_features(out)
    assert paths == list(ref["paths"]) and not failures
    np.testing.assert_array_equal(features, ref["features"])


def test_decoding_in_processes_writes_the_same_features(resnet8_onnx, mixed_folder, tmp_path):
    run_cli("extract", resnet8_onnx, mixed_folder, "-o", tmp_path / "threads.npz")
    proc = run_cli("extract", resnet8_onnx, mixed_folder, "-o", tmp_path / "processes.npz",
                   "--decode", "processes", "--workers", "2")
    threads, processes = np.load(tmp_path / "threads.npz"), np.load(tmp_path / "processes.npz")
    assert list(processes["paths"]) == list(threads["paths"])
    np.testing.assert_array_equal(processes["features"], threads["features"])
    assert "skipped" in proc.stderr  # the folder's bad files, named as with threads


def test_on_error_fail_stops_at_the_first_bad_file(resnet8_onnx, mixed_folder, tmp_path):
    out = tmp_path / "f.npy"
    proc = run_cli("extract", resnet8_onnx, mixed_folder, "-o", out, "--on-error", "fail",
                   check=False)
    assert proc.returncode == 1 and "empty" in error_line(proc) and not out.exists()


@pytest.mark.parametrize("name,code,words", [("a.jpg", 1, "none of the 1 inputs could be read"),
                                              ("notes.txt", 2, "no images found in")])
def test_a_folder_with_nothing_to_extract_exits_non_zero(resnet8_onnx, tmp_path, name, code,
                                                         words):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_text("not a picture")
    proc = run_cli("extract", resnet8_onnx, tmp_path / "in", "-o", tmp_path / "f.npz",
                   check=False)
    assert proc.returncode == code and words in error_line(proc)


def test_unwritable_output_and_unknown_format_are_one_line(resnet8_onnx, photos, tmp_path):
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "f.txt", check=False)
    assert proc.returncode == 2 and ".npy, .npz, .csv, .parquet" in error_line(proc)
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "no" / "f.npy",
                   check=False)
    assert proc.returncode == 1 and "does not exist" in error_line(proc)


def test_corrupt_onnx_is_one_line(tmp_path, photos):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    proc = run_cli("extract", bad, photos, "-o", tmp_path / "f.npz", check=False)
    assert proc.returncode == 1 and "cannot load it as an ONNX model" in error_line(proc)


def test_info_and_doctor(resnet8_onnx):
    info = run_cli("info", resnet8_onnx).stdout
    assert "input   images: tensor(float) ['batch', 32, 32, 3]" in info
    assert '"activation_6"' in info
    doctor = run_cli("doctor").stdout
    assert "CPUExecutionProvider" in doctor and "usable of" in doctor
    assert "extra cpu       installed" in doctor and "extra export    installed" in doctor
    cuda = [line for line in doctor.splitlines() if line.startswith(("CUDA runtime", "cuBLAS",
                                                                      "cuDNN", "TensorRT"))]
    assert len(cuda) == 4  # each says where it loaded from, or why it did not
    assert all(" loads from /" in line or " not found: " in line for line in cuda), cuda


def test_doctor_names_the_file_a_library_loaded_from():
    import ctypes

    from fexport.runtime.doctor import loaded_from

    ctypes.CDLL("libm.so.6")
    path = loaded_from("libm.so.6")
    assert path and os.path.isabs(path) and os.path.exists(path)
    assert loaded_from("libdoes-not-exist.so") is None


def test_the_gpu_extra_brings_cuda_and_cudnn_as_wheels():
    """A fresh GPU machine needs no system CUDA: the extra asks for onnxruntime-gpu's own."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (gpu,) = project["optional-dependencies"]["gpu"]
    assert gpu.startswith("onnxruntime-gpu[cuda,cudnn]")


def test_profile_says_where_the_time_went(resnet8_onnx, photos, tmp_path):
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "f.npy", "--profile")
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("end to end ") and "the engine alone" in lines[1]
    for stage in ("waiting for decoding", "engine", "writing", "other"):
        assert f"{stage} " in lines[2]
    decoders = dict(part.rsplit(" ", 2)[0:2] for part in lines[3].split(": ", 1)[1].split(", "))
    assert lines[3].startswith("  decoders, summed: ") and float(decoders["decoding"]) > 0
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "f.parquet", "--engine",
                   "ray", "--profile", check=False)
    assert proc.returncode == 2 and "--profile is for the local engine" in error_line(proc)
