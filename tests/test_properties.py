"""Property-based tests of the image loader and the preprocessing: any image file, array, or
byte string either converts by the documented rule (Keras's) or raises ImageError; the model
input is Keras's `preprocess_input` in the contract's dtype and layout."""

import dataclasses
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fexport.errors import ImageError
from fexport.runtime.contract import plain_contract, to_model_input
from fexport.runtime.files import images

keras = pytest.importorskip("keras")

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Modes with the formats Pillow can write them in (LAB and YCbCr TIFFs included: PIL cannot
# convert LAB to L, so grayscale models must get ImageError there, as Keras gets ValueError).
WRITABLE = {"1": ["PNG", "BMP", "TIFF"], "L": ["PNG", "JPEG", "BMP", "TIFF", "WEBP"],
            "LA": ["PNG", "TIFF"], "P": ["PNG", "GIF", "BMP", "TIFF"],
            "RGB": ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"], "RGBA": ["PNG", "TIFF", "WEBP"],
            "CMYK": ["JPEG", "TIFF"], "I;16": ["PNG", "TIFF"], "I": ["TIFF"], "F": ["TIFF"],
            "LAB": ["TIFF"], "YCbCr": ["TIFF", "JPEG"], "PA": ["TIFF"]}
RESAMPLES = ["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]


@st.composite
def encoded_images(draw):
    mode = draw(st.sampled_from(sorted(WRITABLE)))
    fmt = draw(st.sampled_from(WRITABLE[mode]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert("RGB" if mode == "P" else mode)
    if mode == "P":
        image = image.quantize(colors=draw(st.integers(2, 256)))
    if mode in ("I;16", "I", "F"):  # the full range of the deep modes, not only 0..255
        deep = pixels[..., 0].astype(np.uint16 if mode == "I;16" else np.int32) * 257
        image = Image.fromarray(deep.astype(np.float32) if mode == "F" else deep)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def load_options(draw):
    return images.LoadOptions(draw(st.integers(1, 24)), draw(st.integers(1, 24)),
                              draw(st.sampled_from([1, 3])), draw(st.sampled_from(RESAMPLES)),
                              draw(st.booleans()))


def _keras(data: bytes, options):
    try:
        image = keras.utils.load_img(io.BytesIO(data), target_size=(options.height,
                                                                    options.width),
                                     color_mode="grayscale" if options.channels == 1 else "rgb",
                                     interpolation=options.resample,
                                     keep_aspect_ratio=options.keep_aspect)
    except ValueError:
        return None  # a conversion PIL does not have
    return keras.utils.img_to_array(image)


@SETTINGS
@given(encoded_images(), load_options())
def test_any_image_file_converts_like_keras_or_raises_image_error(data, options):
    expected = _keras(data, options)
    if expected is None:
        with pytest.raises(ImageError, match="cannot convert"):
            images.load(data, options)
        return
    ours = images.load(data, options)
    assert ours.dtype == np.float32 and ours.shape == (options.height, options.width,
                                                       options.channels)
    assert ours.tobytes() == expected.tobytes()


@SETTINGS
@given(encoded_images(), st.data())
def test_damaged_image_files_raise_image_error_or_load(data, draw):
    """Pillow's decoders see flipped and cut bytes: one kind of answer, whatever breaks."""
    damaged = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 8))):
        damaged[draw.draw(st.integers(0, len(damaged) - 1))] = draw.draw(st.integers(0, 255))
    damaged = bytes(damaged[:draw.draw(st.integers(1, len(damaged)))])
    options = images.LoadOptions(8, 8, 3)
    try:
        array = images.load(damaged, options)
    except ImageError as exc:
        assert "\n" not in str(exc)  # one line, whatever Pillow said
        return
    assert array.shape == (8, 8, 3) and array.dtype == np.float32


@SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes_raise_image_error_or_load(data):
    try:
        array = images.load(data, images.LoadOptions(4, 4, 3))
    except ImageError:
        return
    assert array.shape == (4, 4, 3)


ARRAY_DTYPES = st.sampled_from([np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                np.float64, np.complex64, np.str_, np.object_])
EXPECTED = (6, 5, 3)


@st.composite
def arrays(draw):
    """Arrays of every dtype and of shapes near, at and far from the model's (6, 5, 3)."""
    shape = draw(st.one_of(st.just(EXPECTED), st.just(EXPECTED[:2]),
                           hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)))
    dtype = draw(ARRAY_DTYPES)
    if dtype is np.object_:
        return np.full(shape, None, dtype=object)
    return draw(hnp.arrays(dtype, shape))


@SETTINGS
@given(arrays())
def test_any_array_converts_by_the_rule_or_raises_image_error(array):
    options = images.LoadOptions(*EXPECTED[:2], EXPECTED[2])
    view = array[:, :, None] if array.ndim == 2 else array
    try:
        ours = images.load(array, options)
    except ImageError:
        resizable = view.dtype == np.uint8 and view.ndim == 3 and view.shape[2] in (1, 3, 4)
        assert not (view.shape == EXPECTED and view.dtype.kind in "biuf")
        assert not (resizable and view.size)
        return
    assert ours.dtype == np.float32 and ours.shape == EXPECTED
    if view.shape == EXPECTED:  # passes through, values unchanged
        np.testing.assert_array_equal(ours, view.astype(np.float32))
    else:  # a uint8 image resized by PIL: still pixel values
        assert view.dtype == np.uint8 and 0 <= ours.min() and ours.max() <= 255


MODES = ["caffe", "tf", "torch", "none"]


@st.composite
def contracts(draw):
    contract = plain_contract("images", 4, 3, 3, draw(st.sampled_from(["nhwc", "nchw"])),
                              draw(st.sampled_from(["float32", "uint8"])), 8, "features")
    return dataclasses.replace(contract, preprocessing=draw(st.sampled_from(MODES)),
                               preprocessing_baked=draw(st.booleans()))


@SETTINGS
@given(contracts(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_model_input_is_keras_preprocessing_in_the_contracts_dtype_and_layout(contract, n,
                                                                             seed):
    pixels = np.random.default_rng(seed).uniform(0, 255, (n, 4, 3, 3)).astype(np.float32)
    expected = pixels.copy()
    if not contract.preprocessing_baked and contract.preprocessing != "none":
        expected = keras.applications.imagenet_utils.preprocess_input(
            expected, mode=contract.preprocessing)
    if contract.input.dtype == "uint8":
        expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    if contract.input.layout == "nchw":
        expected = expected.transpose(0, 3, 1, 2)
    got = to_model_input(contract, pixels)
    assert got.dtype == expected.dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    assert got.shape == contract.input.shape(n)
