"""One extractor shared by 8 threads gives exactly the serial results; a soak of thousands of
calls leaves memory and the thread count where they were. Bounded in calls, not in time."""

import gc
import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

from fexport.runtime import FeatureExtractor

THREADS, CALLS_PER_THREAD = 8, 40
SOAK_CALLS, WARMUP_CALLS = 2000, 300
SOAK_GROWTH_MB = 8  # a leak of 4 KB per call would show; one batch of pixels is 48 KB


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def extractor(resnet8_onnx, request):
    """The same file on each backend: OpenVINO's infer requests are per thread, ONNX
    Runtime's session is shared; both must give each thread the serial results."""
    return FeatureExtractor(resnet8_onnx, device="cpu", backend=request.param)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """Four small noisy PNGs (fast to decode, so thousands of calls stay cheap) and a bad one."""
    folder = tmp_path_factory.mktemp("small")
    paths = []
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    (folder / "bad.png").write_bytes(b"not a picture")
    return paths, str(folder / "bad.png")


def _workloads(small_files, photo_paths):
    """Calls of every input kind, each with its expected result computed serially later."""
    paths, _ = small_files
    arrays = np.stack([np.asarray(Image.open(p).resize((32, 32)), np.float32) for p in paths])
    return [
        lambda ex: ex.extract(paths),
        lambda ex: ex.extract(photo_paths, batch_size=4),
        lambda ex: ex.extract(arrays),
        lambda ex: ex.extract([open(p, "rb").read() for p in paths], batch_size=3),
        lambda ex: ex.extract([Image.open(io.BytesIO(open(p, "rb").read())) for p in paths]),
        lambda ex: np.concatenate([b.features for b in ex.stream(paths[::-1], batch_size=2)]),
    ]


def test_8_threads_sharing_one_extractor_give_the_serial_results(extractor, small_files,
                                                                 photo_paths):
    workloads = _workloads(small_files, photo_paths)
    expected = [work(extractor) for work in workloads]
    mismatches, errors = [], []

    def run(thread):
        for call in range(CALLS_PER_THREAD):
            index = (thread + call) % len(workloads)
            try:
                if not np.array_equal(workloads[index](extractor), expected[index]):
                    mismatches.append((thread, call, index))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches, (errors[:3], mismatches[:3])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_soak_of_thousands_of_calls_grows_neither_memory_nor_threads(extractor, small_files):
    paths, bad = small_files
    mixed = [paths[0], bad, paths[1], paths[2]]
    expected = extractor.extract(paths)

    def call(i):
        if i % 2:
            return extractor.extract(paths)
        batches = list(extractor.stream(mixed, batch_size=4))  # the failure path too
        assert batches[0].failures[0][0] == bad
        return None

    for i in range(WARMUP_CALLS):  # let the allocators and onnxruntime's arenas settle
        call(i)
    gc.collect()
    before, threads_before = _rss_mb(), threading.active_count()
    for i in range(SOAK_CALLS):
        result = call(i)
        assert result is None or np.array_equal(result, expected)
    gc.collect()
    assert threading.active_count() == threads_before  # every decoding pool was shut down
    assert _rss_mb() - before < SOAK_GROWTH_MB, f"{_rss_mb() - before:.1f} MB growth"
