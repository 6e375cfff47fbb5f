"""--decode-quality fast: JPEGs decoded at reduced size, judged against exact decoding on real
photos with a trained network (ResNet-8 from tests/data), through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import error_line, run_cli
from fexport.runtime import FeatureExtractor


@pytest.fixture(scope="module")
def large_jpegs(photos, tmp_path_factory):
    """The real photos re-encoded as 2560x1600 JPEGs: phone-photo sizes, where fast pays."""
    folder = tmp_path_factory.mktemp("large_jpegs")
    for path in sorted(photos.iterdir()):
        with Image.open(path) as image:
            large = image.convert("RGB").resize((2560, 1600), Image.Resampling.BICUBIC)
            large.save(folder / f"{path.stem}.jpg", quality=90)
    return folder


def test_verify_decode_reports_the_cosine_and_passes_on_large_photos(resnet8_onnx, large_jpegs):
    proc = run_cli("verify-decode", resnet8_onnx, large_jpegs, "--json")
    found = json.loads(proc.stdout)
    assert found["images"] == 9 and found["passed"]
    # ResNet-8 measured 0.977 on 16 such photos (precision/decode_quality.py); 0.95 is the gate.
    assert 0.95 <= found["min_cosine"] <= found["mean_cosine"] < 1.0
    assert found["exact_s"] > 0 and found["fast_s"] > 0


def test_verify_decode_fails_in_one_line_below_the_gate(resnet8_onnx, large_jpegs):
    proc = run_cli("verify-decode", resnet8_onnx, large_jpegs, "--min-cosine", "0.99999",
                   check=False)
    assert proc.returncode == 1
    assert "fast decoding gave min cosine" in error_line(proc)
    assert "keep --decode-quality exact" in error_line(proc)
    assert "fast vs exact decoding on 9 images" in proc.stdout


def test_verify_decode_needs_enough_images(resnet8_onnx, large_jpegs):
    proc = run_cli("verify-decode", resnet8_onnx, *sorted(large_jpegs.iterdir())[:3],
                   check=False)
    assert proc.returncode != 0
    assert "3 images: comparing decodings needs at least 7" in error_line(proc)


def test_extract_fast_writes_the_fast_features_and_exact_stays_the_default(
        resnet8_onnx, large_jpegs, tmp_path):
    paths = sorted(str(p) for p in large_jpegs.iterdir())
    run_cli("extract", resnet8_onnx, large_jpegs, "-o", tmp_path / "fast.npy",
            "--decode-quality", "fast")
    run_cli("extract", resnet8_onnx, large_jpegs, "-o", tmp_path / "exact.npy")
    fast = FeatureExtractor(resnet8_onnx, decode_quality="fast").extract(paths, batch_size=4)
    exact = FeatureExtractor(resnet8_onnx).extract(paths, batch_size=4)
    # The same engine and pixels on both sides; 1e-6 leaves room for batch-size kernels only.
    np.testing.assert_allclose(np.load(tmp_path / "fast.npy"), fast, rtol=0, atol=1e-6 *
                               np.abs(fast).max())
    np.testing.assert_allclose(np.load(tmp_path / "exact.npy"), exact, rtol=0, atol=1e-6 *
                               np.abs(exact).max())
    assert not np.allclose(fast, exact)  # fast really decoded otherwise

