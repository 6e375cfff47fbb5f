"""runtime/decoding.py: decoding in processes gives what threads give, says which input failed,
loads arrays in this process, survives pickling, and stops with a typed error."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from fexport.errors import ImageError, UsageError
from fexport.runtime import FeatureExtractor, decoding


@pytest.fixture(scope="module")
def in_processes(tiny_model):
    extractor = FeatureExtractor(tiny_model, device="cpu", workers=2, decode="processes")
    yield extractor
    extractor.close()


def test_processes_decode_the_same_pixels_as_threads(in_processes, tiny_model, image_paths,
                                                     pixels, expected_features):
    threads = FeatureExtractor(tiny_model, device="cpu", workers=2)
    got = in_processes.extract(image_paths, batch_size=2)
    np.testing.assert_array_equal(got, threads.extract(image_paths, batch_size=2))
    scale = np.abs(expected_features(pixels)).max()
    assert np.abs(got - expected_features(pixels)).max() <= 1e-5 * scale  # see test_extractor


def test_arrays_load_here_and_bad_files_are_named(in_processes, image_paths, pixels, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    batches = list(in_processes.stream([image_paths[0], str(bad), pixels[1]], batch_size=8))
    assert batches[0].features.shape == (2, 4)
    assert batches[0].failures[0][1].startswith(f"{bad}: not an image Pillow can read")
    with pytest.raises(ImageError, match="not an image Pillow can read"):
        in_processes.extract([str(bad)])


def test_a_pickled_extractor_decodes_in_processes_again(in_processes, image_paths):
    copy = pickle.loads(pickle.dumps(in_processes))
    try:
        assert copy.options["decode"] == "processes"
        np.testing.assert_array_equal(copy.extract(image_paths[:2]),
                                      in_processes.extract(image_paths[:2]))
    finally:
        copy.close()


def test_an_unknown_decoder_is_refused_by_name(tiny_model):
    with pytest.raises(UsageError, match="decode 'fibers': expected one of threads, processes"):
        FeatureExtractor(tiny_model, device="cpu", decode="fibers")


def _segments() -> list[str]:
    """This process's shared memory in /dev/shm (runtime/decoding.py names it by pid)."""
    prefix = f"{decoding.SEGMENT_PREFIX}{os.getpid()}-"
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="POSIX shared memory in /dev/shm")
def test_one_shared_ring_is_lent_to_each_run_and_unlinked_on_close(tiny_model, image_paths,
                                                                     pixels, expected_features):
    extractor = FeatureExtractor(tiny_model, device="cpu", workers=2, decode="processes")
    before = _segments()
    try:
        first = extractor.extract(image_paths, batch_size=2)
        ring = set(_segments()) - set(before)
        assert len(ring) == 1  # lent to the run, kept for the next one
        for batch in extractor.stream(image_paths, batch_size=2):
            break  # a run left early gives its ring back once nothing decodes into it
        np.testing.assert_array_equal(extractor.extract(image_paths, batch_size=2), first)
        assert set(_segments()) - set(before) == ring
        np.testing.assert_allclose(first, expected_features(pixels), rtol=1e-5, atol=1e-5)
    finally:
        extractor.close()
    assert _segments() == before


def test_uint8_and_channels_first_models_decode_the_same_in_processes(tiny_variant,
                                                                        image_paths):
    """The processes write each model's own input into shared memory (here the contract's
    dtype and layout change what is written; the graph is the same)."""
    for changes in ({"dtype": "uint8"}, {"layout": "nchw"}):
        path = tiny_variant(f"{'-'.join(changes.values())}.onnx", input=changes)
        threads = FeatureExtractor(path, device="cpu", workers=2)
        processes = FeatureExtractor(path, device="cpu", workers=2, decode="processes")
        try:
            got = np.concatenate([b.pixels for b in processes.pixels(image_paths, 2)])
            assert got.dtype == changes.get("dtype", "float32")
            assert got.shape[1] == (3 if changes.get("layout") == "nchw" else 16)
            np.testing.assert_array_equal(
                got, np.concatenate([b.pixels for b in threads.pixels(image_paths, 2)]))
        finally:
            processes.close()
