"""The code blocks of README.md and docs/ that run offline and cheaply, run as they stand.

Each test reads the blocks whose marker names it (`<!-- runs: tests/test_docs.py::NAME -->`;
tests/unit/test_docs.py checks that every block has a marker) and runs each in a fresh folder:
shell blocks in bash with this environment's `fexport` first on PATH, Python blocks with exec.

The README's main job runs on the real ResNet-8 committed in tests/data, as written. The extract
and backends pages name VGG16's file (and ResNet-8's, and `m.onnx`); here each of those names is
a copy of the committed tiny model (tests/data/tiny_features.onnx: 16x16 RGB in, 4 features
out), so the commands, options and calls run exactly as written while the widths in their
comments are VGG16's. The photos are the real ones of conftest's `photos`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import DATA, PHOTOS, SKLEARN_PHOTOS
from unit.test_docs import Block, blocks_run_by

TINY = DATA / "tiny_features.onnx"
N_PHOTOS = len(PHOTOS) + len(SKLEARN_PHOTOS)


def _blocks(name: str) -> list[Block]:
    blocks = blocks_run_by(f"tests/test_docs.py::{name}")
    assert blocks, f"no block names tests/test_docs.py::{name}"
    return blocks


def _run(block: Block, folder: Path, namespace: dict | None = None) -> dict:
    """Run one block in `folder`: bash for shell, exec for Python (in `namespace`)."""
    if block.language in ("bash", "sh", "shell"):
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=folder,
                              env={**os.environ, "PATH": path}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (f"{block.where} exited {proc.returncode}:\n"
                                      f"{proc.stdout}\n{proc.stderr}")
        return {"stdout": proc.stdout}
    assert block.language == "python", f"{block.where}: no runner for {block.language!r} blocks"
    namespace = {} if namespace is None else namespace
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(block.text, block.where, "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def _stand_in_folder(folder: Path, photos: Path) -> Path:
    """A fresh folder with the files the extract and backends pages name."""
    folder.mkdir()
    shutil.copytree(photos, folder / "photos")
    shutil.copytree(photos, folder / "large_photos")
    shutil.copy(photos / "rocket.jpg", folder / "cat.jpg")
    shutil.copy(photos / "astronaut.png", folder / "dog.png")
    for name in ("vgg16_feat.onnx", "resnet8.onnx", "m.onnx"):
        shutil.copy(TINY, folder / name)
    return folder


def test_the_readme_main_job_runs(photos, tmp_path):
    """Export the committed ResNet-8 and extract a folder, then the Python example."""
    shutil.copytree(photos, tmp_path / "photos")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(DATA)
    shell, python = _blocks("test_the_readme_main_job_runs")
    assert "verification passed" in _run(shell, tmp_path)["stdout"]
    saved = np.load(tmp_path / "features.npz")
    assert saved["features"].shape == (N_PHOTOS, 64) and len(saved["paths"]) == N_PHOTOS
    X = _run(python, tmp_path)["X"]
    # The same file on the same images in one process and in another: the same float32 math.
    np.testing.assert_allclose(X, saved["features"], rtol=1e-6, atol=1e-6)


def test_the_extract_page_blocks_run(photos, tmp_path):
    blocks = _blocks("test_the_extract_page_blocks_run")
    assert len(blocks) == 6
    lists = {"train_paths": [f"photos/{name}" for name in PHOTOS[:6]],
             "train_labels": [0, 1, 0, 1, 0, 1],
             "test_paths": [f"photos/{name}" for name in (*PHOTOS[6:], *SKLEARN_PHOTOS)],
             "test_labels": [0, 1, 0]}
    for i, block in enumerate(blocks):
        folder = _stand_in_folder(tmp_path / f"block{i}", photos)
        result = _run(block, folder, dict(lists))
        for output in folder.glob("*.npz"):  # the CLI's and extract_to_file's
            assert np.load(output)["features"].shape == (N_PHOTOS, 4), block.where
        if "X" in result:
            assert result["X"].shape == (2, 4)
        if "clf" in result:
            assert list(result["clf"].classes_) == [0, 1]  # fitted on the photos
        if "verify-decode" in block.text:
            assert "(threshold 0.95: passed)" in result["stdout"]


def test_the_backends_page_block_runs(photos, tmp_path):
    (block,) = _blocks("test_the_backends_page_block_runs")
    result = _run(block, _stand_in_folder(tmp_path / "block", photos))
    assert repr(result["extractor"].ran) in block.text  # what its comment says ran
