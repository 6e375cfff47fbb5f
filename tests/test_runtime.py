"""The lean extractor: every input kind, devices told truthfully, pickling, sklearn (threads:
test_concurrency.py)."""

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from fexport.errors import DeviceError, ImageError, UsageError
from fexport.runtime import FeatureExtractor
from fexport.runtime.files.images import LoadOptions, load


@pytest.fixture(scope="module")
def extractor(resnet8_onnx):
    return FeatureExtractor(resnet8_onnx, device="cpu")


def test_every_input_kind_gives_the_same_rows(extractor, photo_paths):
    paths = photo_paths[:3]
    by_path = extractor.extract(paths)
    assert by_path.shape == (3, 64) and by_path.dtype == np.float32
    options = LoadOptions(32, 32, 3)
    arrays = np.stack([load(p, options) for p in paths])
    as_bytes = [open(p, "rb").read() for p in paths]
    as_pil = [Image.open(io.BytesIO(b)) for b in as_bytes]
    for other in (as_bytes, as_pil, list(arrays), arrays, arrays.astype(np.uint8)):
        np.testing.assert_array_equal(extractor.extract(other, batch_size=2), by_path)


def test_folder_order_is_sorted_and_recorded(extractor, photos, photo_paths):
    keys = [key for batch in extractor.stream([photos], batch_size=4) for key in batch.keys]
    assert keys == photo_paths


def test_stream_skips_bad_inputs_and_extract_raises(extractor, photo_paths, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    batches = list(extractor.stream([photo_paths[0], str(bad), photo_paths[1]], batch_size=8))
    assert batches[0].keys == [photo_paths[0], photo_paths[1]]
    assert batches[0].failures[0][0] == str(bad) and "not an image" in batches[0].failures[0][1]
    with pytest.raises(ImageError, match="bad.jpg"):
        extractor.extract([photo_paths[0], str(bad)])


def test_stream_consumes_a_generator_lazily(extractor, photo_paths):
    consumed = []

    def endless():
        while True:
            consumed.append(1)
            yield photo_paths[0]

    first = next(extractor.stream(endless(), batch_size=2))
    assert first.features.shape == (2, 64)
    assert len(consumed) <= 2 * 2 + extractor.workers + 1  # a bounded read-ahead window


def test_cuda_request_on_a_cpu_build_raises_with_a_fix(resnet8_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; covered by bench/gpu_check.sh")
    with pytest.raises(DeviceError, match="--device cpu"):
        FeatureExtractor(resnet8_onnx, device="cuda")
    auto = FeatureExtractor(resnet8_onnx, device="auto")
    assert auto.device == "cpu" and auto.providers == ["CPUExecutionProvider"]


def test_plain_onnx_without_metadata_needs_an_input_size(resnet8_onnx, tmp_path, photo_paths):
    import onnx

    proto = onnx.load(str(resnet8_onnx))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(UsageError, match="input_size"):
        FeatureExtractor(plain, device="cpu")
    features = FeatureExtractor(plain, device="cpu", input_size=(32, 32)).extract(photo_paths)
    reference = FeatureExtractor(resnet8_onnx, device="cpu").extract(photo_paths)
    np.testing.assert_array_equal(features, reference)


def test_extractor_survives_pickling(extractor, photo_paths):
    clone = pickle.loads(pickle.dumps(extractor))
    np.testing.assert_array_equal(clone.extract(photo_paths[:2]), extractor.extract(
        photo_paths[:2]))


def test_sklearn_pipeline_on_image_paths(resnet8_onnx, photo_paths):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    from fexport.runtime.image_features import ImageFeatures

    paths = photo_paths * 2
    labels = [i % 2 for i in range(len(paths))]
    pipeline = make_pipeline(ImageFeatures(str(resnet8_onnx)), LogisticRegression(max_iter=500))
    pipeline.fit(paths, labels)
    assert pipeline.predict(paths).shape == (len(paths),)
    restored = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(restored.predict_proba(paths), pipeline.predict_proba(paths))
    scores = cross_val_score(clone(pipeline), paths, labels, cv=2)
    assert scores.shape == (2,) and ((0 <= scores) & (scores <= 1)).all()
