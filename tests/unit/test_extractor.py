"""runtime/extractor.py: FeatureExtractor.predict and extract on arrays and image files against
the numpy reference, what `ran`, pickling, and one extractor shared by many threads."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fexport.errors import ImageError, UsageError
from fexport.models import preprocessing
from fexport.runtime import FeatureExtractor
from fexport.runtime.backends import Ran

# Scale-relative bound between ONNX Runtime and the float64 numpy reference: float32 rounding
# over a 27-term convolution and a 256-pixel mean is ~1e-6 relative; 1e-5 leaves room for
# kernel summation order, and a wrong pixel, layout or preprocessing misses by 1e-2 or more.
RTOL = 1e-5


def assert_close(actual, expected):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


@pytest.fixture(scope="module")
def extractor(tiny_model):
    return FeatureExtractor(tiny_model, device="cpu", threads=1)


def test_it_says_what_really_runs(extractor):
    assert extractor.ran == Ran("onnxruntime", "cpu", "fp32")
    assert (extractor.backend, extractor.device, extractor.precision) == \
        ("onnxruntime", "cpu", "fp32")
    assert extractor.providers == ["CPUExecutionProvider"]
    assert extractor.feature_dim == 4 and extractor.threads == 1


def test_predict_matches_the_reference_for_a_batch_or_a_list(extractor, pixels,
                                                             expected_features):
    expected = expected_features(pixels)
    assert_close(extractor.predict(pixels), expected)
    np.testing.assert_array_equal(extractor.predict(list(pixels)), extractor.predict(pixels))


def test_extract_reads_image_files_and_folders(extractor, image_folder, image_paths, pixels,
                                               expected_features):
    expected = expected_features(pixels)
    assert_close(extractor.extract(image_paths, batch_size=2), expected)
    assert_close(extractor.extract(str(image_folder)), expected)  # sorted: img0..3, sub/img4
    assert_close(extractor(image_paths[2]), expected[2:3])


def test_extract_takes_arrays_of_every_accepted_form(extractor, pixels, expected_features):
    expected = expected_features(pixels)
    assert_close(extractor.extract(pixels), expected)
    assert_close(extractor.extract(pixels[0]), expected[:1])
    assert_close(extractor.extract([pixels[1].astype(np.uint8), pixels[2]]), expected[1:3])


def test_the_batch_size_does_not_change_the_features(extractor, pixels):
    one_by_one = extractor.extract(pixels, batch_size=1)
    np.testing.assert_array_equal(extractor.extract(pixels, batch_size=3), one_by_one)
    np.testing.assert_array_equal(extractor.extract(pixels, batch_size=64), one_by_one)


def test_nothing_in_is_nothing_out(extractor):
    out = extractor.extract([])
    assert out.shape == (0, 4) and out.dtype == np.float32


def test_a_bad_input_raises_image_error_naming_it(extractor, image_paths, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match=f"{bad}: not an image Pillow can read"):
        extractor.extract([image_paths[0], str(bad)])


def test_a_pinned_batch_is_padded_and_trimmed(tiny_variant, pixels, expected_features):
    pinned = FeatureExtractor(tiny_variant(input={"batch": 2}), device="cpu")
    assert_close(pinned.predict(pixels), expected_features(pixels))  # 5 = 2 + 2 + 1 padded


def test_preprocessing_that_is_not_baked_is_applied_first(tiny_variant, pixels,
                                                          expected_features):
    unbaked = FeatureExtractor(tiny_variant(preprocessing_baked=False), device="cpu")
    # The graph still holds x / 127.5 - 1, so the model now sees "tf" applied twice.
    assert_close(unbaked.predict(pixels), expected_features(preprocessing.apply("tf", pixels)))


def test_a_file_made_elsewhere_needs_its_input_size(plain_model, pixels, expected_features):
    with pytest.raises(UsageError, match="input_size"):
        FeatureExtractor(plain_model, device="cpu")
    plain = FeatureExtractor(plain_model, device="cpu", input_size=(16, 16))
    assert plain.contract.source == "external"
    assert_close(plain.predict(pixels), expected_features(pixels))


def test_a_float32_file_refuses_bf16(tiny_model):
    with pytest.raises(UsageError, match="verified bf16 variant"):
        FeatureExtractor(tiny_model, device="cpu", precision="bf16")


def test_pickling_reopens_the_same_extractor(tiny_model, pixels):
    original = FeatureExtractor(tiny_model, device="cpu", threads=1, resample="bilinear",
                                workers=2)
    copy = pickle.loads(pickle.dumps(original))
    assert copy is not original and copy.engine is not original.engine
    assert (copy.ran, copy.threads, copy.workers) == (original.ran, 1, 2)
    assert copy.load_options == original.load_options
    assert copy.load_options.resample == "bilinear"
    np.testing.assert_array_equal(copy.predict(pixels), original.predict(pixels))


def test_one_extractor_serves_many_threads(extractor, pixels, image_paths):
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 256, (n, 16, 16, 3)).astype(np.float32) for n in range(1, 17)]
    serial = [extractor.predict(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(extractor.predict, batches))
        from_files = list(pool.map(lambda _: extractor.extract(image_paths), range(8)))
    for got, want in zip(parallel, serial):
        np.testing.assert_array_equal(got, want)  # same engine, same batch: the same bits
    for got in from_files:
        np.testing.assert_array_equal(got, from_files[0])


def test_openvino_gives_the_reference_features_too(tiny_model, pixels, expected_features):
    pytest.importorskip("openvino")
    on_openvino = FeatureExtractor(tiny_model, backend="openvino", threads=1)
    assert on_openvino.ran == Ran("openvino", "cpu", "fp32") and on_openvino.providers == []
    assert_close(on_openvino.extract(pixels), expected_features(pixels))
