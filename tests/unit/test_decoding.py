"""runtime/decoding.py: decoding in processes gives what threads give, says which input failed,
loads arrays in this process, survives pickling, and stops with a typed error."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fexport.errors import ImageError, UsageError
from fexport.runtime import FeatureExtractor


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
