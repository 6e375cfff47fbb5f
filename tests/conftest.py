"""Shared fixtures: real photos from the scikit-image/scikit-learn wheels, the third-party models
in tests/data (see its README), the real CLI in a subprocess, and a few exports reused across
tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# As fexport.exporter asks (see there): some tests build channels-first Keras models before
# anything imports the exporter, and without oneDNN an AVX2-only CPU cannot run them.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MINI_XCEPTION = DATA / "oarriaga_fer2013_mini_XCEPTION.102-0.66.hdf5"
RESNET8 = DATA / "mlcommons_tiny_cifar10_pretrainedResnet.h5"
MNIST_CNN = DATA / "akshatv25_mnist_cnn_keras3.15.keras"
VWW = DATA / "mlcommons_tiny_vww_96.h5"  # a trained MobileNet V1: depthwise, hard to quantize
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg",
          "camera.png", "logo.png")  # RGB, grayscale (camera) and RGBA (logo) photos
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def _skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _sklearn_images() -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images"


def _root_entries() -> set[str]:
    """What the repository's root holds, without hidden files and caches."""
    return {p.name for p in ROOT.iterdir() if not p.name.startswith((".", "__"))}


def pytest_sessionstart(session):
    session.config.stash[_ROOT_BEFORE] = _root_entries()


def pytest_sessionfinish(session, exitstatus):
    """The tests write only into their own tmp folders: a file left in the repository's root
    (a library that dumps into the working directory) fails the run, named."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller checks
        return
    leaked = sorted(_root_entries() - session.config.stash[_ROOT_BEFORE])
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        sys.stderr.write(f"\nthe tests left files in {ROOT}: {', '.join(leaked)}\n")


_ROOT_BEFORE = pytest.StashKey[set]()


def pytest_xdist_auto_num_workers(config):
    """-n auto: one worker per core, as many as memory holds. The heaviest promise tests (the
    notebook example with VGG16, optimize) peak near 7 GiB each; 8 GiB a worker leaves room."""
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cores, memory // (8 * 2**30)))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of real photos (PNG and JPEG, RGB, grayscale, RGBA)."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(_skimage_data() / name, folder / name)
    for name in SKLEARN_PHOTOS:
        shutil.copy(_sklearn_images() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def photo_paths(photos) -> list[str]:
    return sorted(str(p) for p in photos.iterdir())


def run_cli(*args, check=True, env=None, timeout=600):
    """Run the real `fexport` CLI in a fresh interpreter; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "fexport", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"fexport {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def error_line(proc) -> str:
    """The CLI's error output with TensorFlow's import-time log lines removed."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fexport:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def vgg16_onnx(tmp_path_factory) -> Path:
    """The card's command, offline: VGG16 to block5_pool, flatten head, random weights."""
    path = tmp_path_factory.mktemp("vgg16") / "vgg16_feat.onnx"
    proc = run_cli("vgg16", "--layer", "block5_pool", "--head", "flatten", "-o", path,
                   "--weights", "none")
    assert "verification passed" in proc.stdout
    return path


@pytest.fixture(scope="session")
def resnet8_onnx(tmp_path_factory) -> Path:
    """A small real model (tf.keras 2.4 ResNet-8, 32x32x3) cut at activation_6 with avg: 64."""
    from fexport.exporter import ExportOptions, export

    path = tmp_path_factory.mktemp("resnet8") / "resnet8.onnx"
    export(ExportOptions(str(RESNET8), layers=["activation_6"], head="avg", output=str(path)))
    return path
