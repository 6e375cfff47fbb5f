"""The loader reproduces Keras byte for byte, and converts odd images by the documented rule."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from fexport.errors import ImageError
from fexport.runtime.files import images, resizing

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("resample", ["nearest", "bilinear", "bicubic", "lanczos", "box"])
@pytest.mark.parametrize("keep_aspect", [False, True])
def test_rgb_loading_is_byte_identical_to_keras(photo_paths, resample, keep_aspect):
    options = images.LoadOptions(224, 200, 3, resample, keep_aspect)
    for path in photo_paths:
        ours = images.load(path, options)
        theirs = keras.utils.img_to_array(keras.utils.load_img(
            path, target_size=(224, 200), interpolation=resample,
            keep_aspect_ratio=keep_aspect))
        assert ours.dtype == theirs.dtype == np.float32
        assert ours.tobytes() == theirs.tobytes(), path


def test_grayscale_loading_is_byte_identical_to_keras(photo_paths):
    options = images.LoadOptions(64, 64, 1)
    for path in photo_paths:
        theirs = keras.utils.img_to_array(keras.utils.load_img(
            path, color_mode="grayscale", target_size=(64, 64)))
        assert images.load(path, options).tobytes() == theirs.tobytes(), path


def _encoded(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _gradient(mode, size=(40, 30)):
    array = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray(array.astype(np.uint8), "RGB").convert(mode)


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"),
                                      ("L", "PNG"), ("LA", "PNG"), ("I;16", "PNG"),
                                      ("1", "PNG")])
def test_odd_modes_convert_to_rgb_like_keras(tmp_path, mode, fmt):
    image = _gradient("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image, np.uint16) * 257)  # 16-bit grayscale
    path = tmp_path / f"odd.{fmt.lower()}"
    path.write_bytes(_encoded(image, fmt))
    ours = images.load(str(path), images.LoadOptions(32, 32, 3))
    theirs = keras.utils.img_to_array(keras.utils.load_img(str(path), target_size=(32, 32)))
    assert ours.shape == (32, 32, 3) and ours.tobytes() == theirs.tobytes()


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    array = images.load(str(path), images.LoadOptions(8, 8, 3))
    assert array[0, 0].tolist() == [255.0, 0.0, 0.0]


def test_one_pixel_image_is_resized(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    array = images.load(str(path), images.LoadOptions(5, 7, 3))
    assert array.shape == (5, 7, 3) and (array == [10, 20, 30]).all()


def test_exif_orientation_only_when_asked(tmp_path):
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    plain = images.load(str(path), images.LoadOptions(2, 4, 3))
    rotated = images.load(str(path), images.LoadOptions(4, 2, 3, exif=True))
    assert plain.shape == (2, 4, 3) and plain[0, 0].mean() > 200
    assert rotated.shape == (4, 2, 3) and rotated[0, 1].mean() > 200


BAD_FILES = {
    "empty.jpg": (b"", "empty"),
    "text.jpg": (b"this is not an image\n" * 20, "not an image"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_image_error(tmp_path, name):
    data, words = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=words):
        images.load(str(path), images.LoadOptions(8, 8, 3))


def test_truncated_jpeg_raises_image_error(tmp_path, photo_paths):
    data = open([p for p in photo_paths if p.endswith(".jpg")][0], "rb").read()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="damaged or truncated"):
        images.load(str(path), images.LoadOptions(8, 8, 3))


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    # A real 2000x2000 PNG against a lowered limit: Pillow's own check, decided from the header.
    path = tmp_path / "bomb.png"
    Image.new("L", (2000, 2000)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        images.load(str(path), images.LoadOptions(8, 8, 3))


def test_arrays_pass_through_or_resize():
    options = images.LoadOptions(4, 4, 3)
    exact = np.full((4, 4, 3), 0.5, np.float32)
    assert images.load(exact, options) is not None and images.load(exact, options)[0, 0, 0] == 0.5
    assert images.load(np.zeros((9, 9, 3), np.uint8), options).shape == (4, 4, 3)
    with pytest.raises(ImageError, match=r"takes arrays shaped \(N, 4, 4, 3\), \(4, 4, 3\) "):
        images.load(np.zeros((9, 9, 3), np.float32), options)


def test_folder_listing_is_recursive_sorted_and_case_insensitive(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.JPG", "b/c.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    listed = [p[len(str(tmp_path)) + 1:] for p in images.list_images(tmp_path)]
    assert listed == ["a.JPG", "b/c.jpeg", "b/z.PNG"]


@pytest.mark.parametrize("error", [IndexError("list index out of range"), EOFError(),
                                   struct.error("unpack requires a buffer of 4 bytes"),
                                   TypeError("a plugin's\nmulti-line complaint")])
def test_any_error_inside_pillow_becomes_one_line_image_error(tmp_path, monkeypatch, error):
    # Pillow's plugins raise these on some hostile files; fuzzing finds them too rarely to
    # count on, so a plugin that raises them stands in.
    path = tmp_path / "odd.png"
    Image.new("RGB", (2, 2)).save(path)

    class Broken:
        def load(self):
            raise error

    monkeypatch.setattr(Image, "open", lambda source: Broken())
    with pytest.raises(ImageError, match="odd.png: the image is damaged or truncated") as info:
        images.load(str(path), images.LoadOptions(8, 8, 3))
    assert "\n" not in str(info.value)


def test_inputs_of_no_known_kind_raise_image_error():
    with pytest.raises(ImageError, match="<int>: expected a file path, bytes, a PIL image"):
        images.load(42, images.LoadOptions(8, 8, 3))


# files/resizing.py against keras.ops.image.resize on the TensorFlow backend (KerasHub's
# ImageConverter). Weights and indices are computed as TF computes them, in float32; only the
# order of the float32 sums differs (BLAS products against TF's loops), a few ulps of values up
# to 255 (an ulp of 255 is 1.5e-5). Measured worst: 9.2e-5 without antialias, 2.1e-4 with it
# (a 4000x3000 photo to 224x224, ~55 taps an output). Nearest picks pixels: bit for bit.
KERAS_TOLERANCE = 1e-3
RESIZE_CASES = [  # (source height, width), (target height, width), crop_to_aspect_ratio
    ((300, 400), (224, 224), True), ((300, 400), (224, 224), False),  # downscale by 1.34, 1.79
    ((37, 53), (16, 16), True), ((640, 480), (97, 131), False),  # odd factors, other aspect
    ((31, 17), (70, 90), True), ((31, 17), (70, 90), False),  # upscale, the crop matters
    ((100, 100), (33, 67), True), ((5, 7), (3, 11), False), ((1, 1), (3, 5), True),
]


def _keras_resize(array, size, interpolation="bilinear", antialias=False, crop=True):
    assert keras.backend.backend() == "tensorflow"  # the backend KerasHub runs on and we match
    return np.asarray(keras.ops.image.resize(array, size, interpolation=interpolation,
                                             antialias=antialias, crop_to_aspect_ratio=crop))


def _assert_matches_keras(ours, theirs, interpolation):
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    if interpolation == "nearest":
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=KERAS_TOLERANCE)


@pytest.mark.parametrize("interpolation", resizing.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("source, target, crop", RESIZE_CASES)
def test_resize_matches_keras_on_random_arrays(interpolation, antialias, source, target, crop):
    array = (np.random.default_rng(sum(source)).random((*source, 3)) * 255).astype(np.float32)
    ours = resizing.resize(array, *target, interpolation, antialias, crop)
    _assert_matches_keras(ours, _keras_resize(array, target, interpolation, antialias, crop),
                          interpolation)


@pytest.mark.parametrize("interpolation", resizing.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_matches_keras_on_photos(photo_paths, interpolation, antialias):
    for path in photo_paths:
        array = keras.utils.img_to_array(keras.utils.load_img(path))
        for target, crop in (((224, 224), True), ((150, 200), False), ((700, 90), True)):
            ours = resizing.resize(array, *target, interpolation, antialias, crop)
            _assert_matches_keras(
                ours, _keras_resize(array, target, interpolation, antialias, crop),
                interpolation)


@pytest.mark.parametrize("interpolation", resizing.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_tf_leaves_an_image_at_the_target_size_unchanged(interpolation, antialias):
    # Why resizing.resize may return such an image as it is: TF's kernels at scale 1 do too.
    array = (np.random.default_rng(5).random((23, 31, 3)) * 255).astype(np.float32)
    theirs = _keras_resize(array, (23, 31), interpolation, antialias)
    np.testing.assert_array_equal(theirs, array)
    np.testing.assert_array_equal(resizing.resize(array, 23, 31, interpolation, antialias),
                                  array)


def test_keras_ops_loading_matches_kerashubs_predict_pipeline(photo_paths):
    # KerasHub's ImageConverter on what predict is given: load_img at full size, img_to_array.
    for path in photo_paths:
        for size in ((224, 224), (96, 160)):
            options = images.LoadOptions(*size, resizer="keras-ops", resample="bilinear",
                                         keep_aspect=True)
            theirs = _keras_resize(keras.utils.img_to_array(keras.utils.load_img(path)), size)
            _assert_matches_keras(images.load(path, options), theirs, "bilinear")
