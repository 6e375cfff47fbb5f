"""runtime/files/images.py: images and arrays in, float32 (H, W, C) out, by Keras's rule; every
bad input an ImageError with a one-line reason."""

import dataclasses
import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fexport.errors import ImageError, UsageError
from fexport.runtime.files import images, resizing
from fexport.runtime.files.images import LoadOptions

RGB = LoadOptions(16, 16)
GRAY = LoadOptions(16, 16, channels=1)


def _save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


def test_folders_are_listed_recursively_sorted_and_by_extension(tmp_path):
    for name in ("b.PNG", "a.jpg", "z/c.webp", "z/d.txt", "y/e.JPEG", "f.npy"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = images.list_images(tmp_path)
    assert found == sorted(found)
    assert [os.path.relpath(p, tmp_path) for p in found] == \
        ["a.jpg", "b.PNG", "y/e.JPEG", "z/c.webp"]


def test_expand_inputs_replaces_folders_and_keeps_everything_else(image_folder, image_paths):
    array = np.zeros((16, 16, 3))
    assert images.expand_inputs(str(image_folder)) == sorted(image_paths)
    expanded = images.expand_inputs([image_folder, "missing.png", array])
    assert expanded[:5] == sorted(image_paths)
    assert expanded[5] == "missing.png" and expanded[6] is array


def test_no_images_found_names_the_inputs_and_the_extensions():
    message = str(images.nothing_found(["here", "there"]))
    assert "no images found in here, there" in message and ".webp" in message


def test_describe_names_each_kind_of_input():
    assert images.describe("a/b.png") == "a/b.png"
    assert images.describe(np.zeros((2, 3), np.uint8)) == "<array (2, 3) uint8>"
    assert images.describe(Image.new("RGBA", (4, 5))) == "<PIL RGBA 4x5>"
    assert images.describe(3.0) == "<float>"


def test_a_png_at_the_models_size_loads_exactly(image_paths, pixels):
    loaded = images.load(image_paths[0], RGB)
    assert loaded.dtype == np.float32 and loaded.shape == (16, 16, 3)
    np.testing.assert_array_equal(loaded, pixels[0])


def test_bytes_a_path_and_a_pil_image_load_alike(image_paths):
    path = image_paths[1]
    with open(path, "rb") as f:
        data = f.read()
    from_path = images.load(path, RGB)
    np.testing.assert_array_equal(images.load(data, RGB), from_path)
    np.testing.assert_array_equal(images.load(Image.open(path), RGB), from_path)


def test_nearest_resize_of_blocks_keeps_each_blocks_colour(tmp_path):
    blocks = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    big = blocks.repeat(2, axis=0).repeat(2, axis=1)  # 32x32, each pixel a 2x2 block
    loaded = images.load(_save(tmp_path / "big.png", big), RGB)
    np.testing.assert_array_equal(loaded, blocks)


def test_keep_aspect_crops_the_centre_before_resizing(tmp_path):
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, :8] = wide[:, 24:] = (255, 0, 0)  # red outer quarters
    wide[:, 8:24] = (0, 255, 0)  # a green centre square
    path = _save(tmp_path / "wide.png", wide)
    cropped = images.load(path, LoadOptions(16, 16, keep_aspect=True))
    assert (cropped == (0, 255, 0)).all()
    squashed = images.load(path, RGB)
    assert (squashed[:, 0] == (255, 0, 0)).all() and (squashed[:, 8] == (0, 255, 0)).all()


def test_grayscale_is_replicated_and_alpha_dropped_for_rgb_models(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    loaded = images.load(_save(tmp_path / "g.png", gray), RGB)
    np.testing.assert_array_equal(loaded, np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)  # fully transparent: the colour is kept, not composited
    loaded = images.load(_save(tmp_path / "t.png", rgba), RGB)
    assert (loaded == (10, 20, 30)).all()


def test_sixteen_bit_grayscale_stays_whole_for_one_channel_and_clips_for_rgb(tmp_path):
    deep = np.full((16, 16), 300, np.uint16)
    deep[0, 0] = 65535
    path = _save(tmp_path / "deep.png", deep)
    gray = images.load(path, GRAY)
    assert gray.shape == (16, 16, 1) and gray[0, 0, 0] == 65535 and gray[1, 1, 0] == 300
    assert images.load(path, RGB).max() == 255


def test_colour_becomes_luma_for_one_channel_models(tmp_path):
    colours = np.zeros((16, 16, 3), np.uint8)
    colours[:, :, 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76.2
    loaded = images.load(_save(tmp_path / "red.png", colours), GRAY)
    assert loaded.shape == (16, 16, 1) and (loaded == 76).all()


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=10)
    assert (images.load(str(path), RGB) == (255, 0, 0)).all()


def test_the_format_is_read_from_the_content_not_the_name(tmp_path, pixels):
    path = _save(tmp_path / "really_a_png.jpg", pixels[0].astype(np.uint8), format="PNG")
    np.testing.assert_array_equal(images.load(path, RGB), pixels[0])  # lossless: a PNG


def test_exif_orientation_is_ignored_unless_asked_for(tmp_path):
    halves = np.zeros((16, 16, 3), np.uint8)
    halves[:, 8:] = 255  # left black, right white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = _save(tmp_path / "rotated.png", halves, exif=exif)
    np.testing.assert_array_equal(images.load(path, RGB), halves)
    turned = images.load(path, LoadOptions(16, 16, exif=True))
    assert (turned[:8] == 0).all() and (turned[8:] == 255).all()  # now top black, bottom white


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.png", "cannot read the file"),
    (lambda d: d, "not a regular file"),
    (lambda d: _write(d / "empty.png", b""), "the file is empty"),
    (lambda d: _write(d / "text.png", b"hello, not an image"), "not an image Pillow can read"),
    (lambda d: _write(d / "cut.png", _png_bytes()[:60]), "damaged or truncated"),
])
def test_unreadable_files_raise_one_line_image_errors(tmp_path, make, words):
    item = make(tmp_path)
    with pytest.raises(ImageError, match=words) as caught:
        images.load(str(item), RGB)
    assert "\n" not in str(caught.value) and str(item) in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        images.load(str(fifo), RGB)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    path = _save(tmp_path / "big.png", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > twice this limit
    with pytest.raises(ImageError, match="decompression bomb"):
        images.load(path, RGB)


def test_other_input_types_and_channel_counts_are_refused(image_paths):
    with pytest.raises(ImageError, match="expected a file path, bytes"):
        images.load(42, RGB)
    with pytest.raises(ImageError, match="1 or 3 channels; this model has 4"):
        images.load(image_paths[0], LoadOptions(16, 16, channels=4))
    with pytest.raises(UsageError, match="unknown resampling 'cubic'"):
        LoadOptions(16, 16, resample="cubic")


@pytest.mark.parametrize("dtype", [np.bool_, np.int16, np.uint8, np.float64])
def test_arrays_at_the_models_size_pass_through_as_float32(dtype):
    array = (np.arange(16 * 16 * 3) % 2).reshape(16, 16, 3).astype(dtype)
    loaded = images.load(array, RGB)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array.astype(np.float32))


def test_channels_first_arrays_are_read_in_an_nchw_models_layout():
    chw = np.random.default_rng(1).random((3, 16, 16))
    loaded = images.load(chw, LoadOptions(16, 16, layout="nchw"))
    np.testing.assert_array_equal(loaded, chw.transpose(1, 2, 0).astype(np.float32))
    with pytest.raises(ImageError, match=r"takes arrays shaped \(N, 16, 16, 3\), \(16, 16, 3\)"):
        images.load(chw, RGB)  # an NHWC model does not take CHW


def test_an_array_that_fits_two_readings_is_read_in_the_models_layout():
    cube = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    as_nchw = images.load(cube, LoadOptions(3, 3, layout="nchw"))
    np.testing.assert_array_equal(as_nchw, cube.transpose(1, 2, 0))
    np.testing.assert_array_equal(images.load(cube, LoadOptions(3, 3)), cube)


def test_uint8_arrays_of_another_size_go_through_pil():
    big = np.full((32, 8, 3), 7, np.uint8)
    assert (images.load(big, RGB) == 7).all() and images.load(big, RGB).shape == (16, 16, 3)
    gray = np.full((5, 5), 9, np.uint8)
    assert (images.load(gray, RGB) == 9).all()


@pytest.mark.parametrize("array", [np.zeros((16, 16, 3), complex), np.zeros((0, 5, 3), np.uint8),
                                   np.zeros((8, 8, 3), np.float32), np.array(["a"])])
def test_other_arrays_are_refused_naming_the_shapes_accepted(array):
    with pytest.raises(ImageError, match="resize it first or pass the image file"):
        images.load(array, RGB)


def test_batch_arrays_split_into_images_in_channels_last():
    nchw = np.random.default_rng(2).random((4, 3, 16, 16)).astype(np.float32)
    split = images.split_batch_arrays([nchw, "x.png"], LoadOptions(16, 16, layout="nchw"))
    assert len(split) == 5 and split[4] == "x.png"
    np.testing.assert_array_equal(np.stack(split[:4]), nchw.transpose(0, 2, 3, 1))
    odd = np.zeros((2, 5, 5, 5))  # no batch form of the model: split along its first axis
    assert [a.shape for a in images.split_batch_arrays([odd], RGB)] == [(5, 5, 5)] * 2


@given(st.sampled_from(["nhwc", "nchw", "nhw"]), st.integers(1, 3), st.integers(1, 4))
def test_layouts_round_trip(layout, batch, side):
    channels = 1 if layout == "nhw" else 3
    x = np.arange(batch * side * side * channels, dtype=np.float32).reshape(
        batch, side, side, channels)
    moved = images.from_nhwc(x, layout)
    expected_shape = {"nhwc": x.shape, "nchw": (batch, channels, side, side),
                      "nhw": (batch, side, side)}[layout]
    assert moved.shape == expected_shape
    np.testing.assert_array_equal(images.to_nhwc(moved, layout), x)


def _write(path, data):
    path.write_bytes(data)
    return path


def _png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), np.uint8)).save(
        buffer, "PNG")
    return buffer.getvalue()


def _big_jpeg(size=(640, 480)) -> bytes:
    """A smooth 640x480 JPEG: DCT scaling may decode it at 1/8 for a 16x16 model."""
    x, y = np.meshgrid(np.linspace(0, 255, size[0]), np.linspace(0, 255, size[1]))
    array = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [RGB, GRAY, LoadOptions(16, 24, keep_aspect=True)])
def test_fast_decoding_gives_the_models_size_close_to_exact(options):
    exact = images.load(_big_jpeg(), options)
    fast = images.load(_big_jpeg(), dataclasses.replace(options, decode_quality="fast"))
    assert fast.shape == exact.shape == (options.height, options.width, options.channels)
    assert fast.dtype == np.float32
    # A smooth gradient sampled at 16 points: DCT scaling averages blocks of 8x8 pixels of a
    # ramp of 0.4 levels a pixel, so each sample moves by a few levels, never by a wrong region.
    assert np.abs(fast - exact).max() < 8


def test_fast_decoding_really_decodes_jpegs_at_reduced_size():
    with Image.open(io.BytesIO(_big_jpeg())) as image:
        image.draft(*images._draft(LoadOptions(16, 16, decode_quality="fast")))
        assert image.size == (80, 60)  # 1/8 of 640x480, still at least 16x16


def test_fast_decoding_leaves_other_formats_exact(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8)
    path = _save(tmp_path / "noise.png", array)
    fast = LoadOptions(16, 16, decode_quality="fast")
    np.testing.assert_array_equal(images.load(path, fast), images.load(path, RGB))


def test_decode_quality_is_checked():
    with pytest.raises(UsageError, match="decode quality 'quick': expected exact"):
        LoadOptions(16, 16, decode_quality="quick")


KERAS_OPS = LoadOptions(24, 32, resizer="keras-ops", resample="bilinear")


@pytest.mark.parametrize("fields, words", [
    ({"resizer": "tf"}, "unknown resizer 'tf'; expected pil .* or keras-ops"),
    ({"resizer": "keras-ops", "resample": "lanczos"},
     "resampling 'lanczos' with the keras-ops resizer; expected one of nearest, bilinear, "
     "bicubic"),
    ({"antialias": True}, "antialias=True needs resizer='keras-ops'"),
])
def test_resizer_options_are_checked(fields, words):
    with pytest.raises(UsageError, match=words):
        LoadOptions(16, 16, **fields)


def test_an_unknown_interpolation_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown interpolation 'area' .* expected one of "
                                         "nearest, bilinear, bicubic"):
        resizing.resize(np.zeros((4, 4, 3), np.float32), 2, 2, "area")


@pytest.mark.parametrize("resample", resizing.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_keras_ops_loads_a_photo_as_float32_at_the_models_size(tmp_path, resample, antialias):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_big_jpeg())
    options = dataclasses.replace(KERAS_OPS, resample=resample, antialias=antialias)
    native = images.load_native(str(path), options)
    assert native.dtype == np.float32 and native.shape == (24, 32, 3)
    np.testing.assert_array_equal(images.load(str(path), options), native)
    assert 0 <= native.min() and native.max() <= 255


def test_keras_ops_leaves_an_image_at_the_models_size_unchanged(image_paths, pixels):
    loaded = images.load_native(image_paths[0], dataclasses.replace(KERAS_OPS, height=16,
                                                                      width=16))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, pixels[0])


def test_keras_ops_resizes_uint8_arrays_of_another_size():
    ramp = np.broadcast_to(np.arange(0, 32, 4, dtype=np.uint8)[None, :, None], (8, 8, 3))
    loaded = images.load(np.ascontiguousarray(ramp), dataclasses.replace(KERAS_OPS, height=4,
                                                                           width=4))
    # Halving a ramp with half-pixel centres averages pixel pairs: values between the pixels'.
    np.testing.assert_array_equal(loaded[0, :, 0], [2, 10, 18, 26])


@pytest.mark.parametrize("interpolation", resizing.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("source, target", [((37, 53), (16, 16)), ((5, 7), (30, 11)),
                                            ((300, 200), (7, 224))])
@pytest.mark.parametrize("crop", [False, True])
def test_a_constant_image_stays_constant(interpolation, antialias, source, target, crop):
    flat = np.full((*source, 3), 137.25, np.float32)
    resized = resizing.resize(flat, *target, interpolation, antialias, crop)
    assert resized.dtype == np.float32 and resized.shape == (*target, 3)
    # The weights sum to 1 only to float32 rounding, as in TF: a few ulps of 137.
    np.testing.assert_allclose(resized, 137.25, rtol=1e-6)


def test_bilinear_upscale_uses_half_pixel_centres_and_clamps_at_the_edges():
    # Output i samples input (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25: the outer ones
    # clamp to the edge pixel, the inner ones are 3:1 and 1:3 blends.
    corners = np.array([[0, 4], [8, 12]], np.float32)[:, :, None]
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], np.float32)
    resized = resizing.resize(corners, 4, 4, "bilinear")
    np.testing.assert_array_equal(resized[:, :, 0], expected)


def test_the_keras_crop_keeps_the_centre_with_float32_rounding():
    assert resizing.crop_box(480, 640, 224, 224) == (0, 80, 480, 480)
    assert resizing.crop_box(451, 300, 100, 300) == (175, 0, 100, 300)
    assert resizing.crop_box(3, 1000, 7, 3) == (0, 499, 3, 1)  # never below 1 pixel
