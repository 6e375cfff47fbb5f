"""The CUDA path on a real GPU: provider truth, IO binding against the CPU, the FP16 variant's
quality, one extractor shared by 8 threads, and `fexport extract --device cuda`.

Skipped where onnxruntime has no CUDA device (CI has none); bench/gpu_check.sh runs them on a
lent GPU machine. The real model is the trained VWW MobileNet, exported here when TensorFlow is
installed, or read from $FEXPORT_GPU_MODELS/vww.onnx (the GPU machine has no TensorFlow).
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, VWW, run_cli
from fexport.runtime import FeatureExtractor
from fexport.runtime.backends import cuda_available

pytestmark = pytest.mark.skipif(not cuda_available(), reason="onnxruntime has no CUDA device")

TINY = DATA / "tiny_features.onnx"
# CUDA against the CPU, both float32 with TF32 off: cuDNN picks other convolution algorithms
# (implicit GEMM, Winograd, FFT), which sum in another order; float32 rounding over a
# MobileNet's 28 layers stays near 1e-5 of the largest feature, so 1e-4 leaves room and would
# still catch TF32 (about 1e-3) or a wrong layout (order 1).
CUDA_MAX_REL = 1e-4
# FP16's promise on the GPU (issue #16): min cosine 0.999 against float32 on real photos.
FP16_MIN_COSINE = 0.999


def max_rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def vww_onnx(tmp_path_factory) -> Path:
    carried = os.environ.get("FEXPORT_GPU_MODELS")
    if carried:
        return Path(carried) / "vww.onnx"
    path = tmp_path_factory.mktemp("cuda") / "vww.onnx"
    run_cli(VWW, "--layer", "activation_26", "--head", "avg", "--preprocess", "tf", "-o", path)
    return path


def test_cuda_is_what_runs_when_asked_and_by_default():
    for device in ("cuda", "auto"):
        extractor = FeatureExtractor(TINY, device=device)
        assert (extractor.device, extractor.precision) == ("cuda", "fp32")
        assert extractor.providers[0] == "CUDAExecutionProvider"


def test_cuda_matches_the_cpu_on_real_photos_at_batch_1_and_more(vww_onnx, photo_paths):
    cpu = FeatureExtractor(vww_onnx, device="cpu").extract(photo_paths, batch_size=4)
    cuda = FeatureExtractor(vww_onnx, device="cuda")
    for batch_size in (1, 4):
        got = cuda.extract(photo_paths, batch_size=batch_size)
        assert got.shape == cpu.shape
        print(f"CUDA vs CPU at batch {batch_size}: max rel {max_rel(got, cpu):.2e}")
        assert max_rel(got, cpu) <= CUDA_MAX_REL


def test_fp16_variant_is_judged_on_cuda_and_runs_there(vww_onnx, photos, tmp_path):
    fp16 = tmp_path / "vww.fp16.onnx"
    run_cli("convert", vww_onnx, "--fp16", "--eval-images", photos, "-o", fp16)
    extractor = FeatureExtractor(fp16, device="cuda")
    assert (extractor.device, extractor.precision) == ("cuda", "fp16")
    report = extractor.contract.quantization
    assert report.measured_on == "onnxruntime cuda fp16"  # not the CPU's casts to float32
    print(f"FP16 on CUDA: min cosine {report.min_cosine:.5f} on {report.images} photos")
    assert report.min_cosine >= FP16_MIN_COSINE


def test_eight_threads_share_one_cuda_extractor(vww_onnx):
    extractor = FeatureExtractor(vww_onnx, device="cuda")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (3, 96, 96, 3)).astype(np.float32) for _ in range(16)]
    alone = [extractor.predict(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        shared = list(pool.map(extractor.predict, batches))
    for one, other in zip(alone, shared):
        np.testing.assert_allclose(other, one, rtol=1e-5, atol=1e-6)  # the same kernels


def test_a_pickled_cuda_extractor_opens_on_cuda_again():
    extractor = pickle.loads(pickle.dumps(FeatureExtractor(TINY, device="cuda")))
    assert extractor.device == "cuda"


def test_cli_extract_on_cuda_gives_the_cpu_features(vww_onnx, photos, photo_paths, tmp_path):
    run_cli("extract", vww_onnx, photos, "--device", "cuda", "-o", tmp_path / "f.npy")
    got = np.load(tmp_path / "f.npy")
    cpu = FeatureExtractor(vww_onnx, device="cpu").extract(sorted(photo_paths))
    assert got.shape == (len(photo_paths), 256)
    assert max_rel(got, cpu) <= CUDA_MAX_REL
