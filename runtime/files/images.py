"""Image loading that reproduces Keras, and the one rule for converting any image to the model.

By default an image is read exactly as `keras.utils.load_img(path, target_size=(h, w),
interpolation="nearest")` followed by `keras.utils.img_to_array` reads it, so features match a
Keras pipeline bit for bit. The rule for odd images is Keras's, because it is PIL's `convert`:

- models with 3 channels get `convert("RGB")`: grayscale is replicated, the alpha of RGBA/LA is
  dropped (not composited), palette and CMYK are mapped to RGB, 16-bit grayscale is clipped to
  0..255;
- models with 1 channel get `convert("L")` (ITU-R 601 luma) unless the image is already
  grayscale at 8, 16 or 32 bits, which is kept as it is (so 16-bit values stay 0..65535);
- animated images (GIF, APNG, WebP) contribute their first frame;
- EXIF orientation is ignored unless `exif=True` (Keras ignores it too);
- the format is read from the content, not the extension (a PNG named .jpg is a PNG).

With `resizer="keras-ops"` the resize is instead KerasHub's: `keras.ops.image.resize` on the
TensorFlow backend (an ImageConverter's `interpolation`, `antialias` and `crop_to_aspect_ratio`
are `resample`, `antialias` and `keep_aspect`), reproduced in numpy by files/resizing.py on the
full-size image, decoded and converted as above, so features match KerasHub's predict pipeline
(`load_img(path)`, `img_to_array`, the converter); pixels are then float32, not whole values.

Arrays at the model's size, of any bool, integer or float dtype, pass through as float32 (values
unchecked), one image or a batch, in the layout of the model's input or channels-last: see
ARRAY_FORMS. uint8 (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) arrays of other sizes are
converted and resized like an image, by the chosen resizer. Anything else raises ImageError
naming the shapes the model accepts.

Every input that cannot be read or converted raises ImageError with a one-line reason: missing
or not a regular file, empty, unknown format, damaged or truncated, a mode PIL cannot convert.
Pillow's decompression-bomb limit stays on: an image above twice `Image.MAX_IMAGE_PIXELS` is
refused from its header, before anything is decoded.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fexport.errors import ImageError, UsageError, whole_sentences
from fexport.runtime.files import resizing, walk

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm", ".jfif")
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
GRAYSCALE_MODES = ("L", "I;16", "I")
# "exact" decodes every pixel, as Keras does. "fast" lets libjpeg decode a JPEG at 1/2, 1/4 or
# 1/8 of its size (DCT scaling, Pillow's `draft`), never below the model's size, then resizes
# with the same filter: on this project's 2-core EPYC a 2560x1600 photo decoded in 31-34 ms
# instead of 59. The filter is kept because it, not the scaling, is what moves features: on 16
# photos at 2560x1600 with the trained VWW MobileNet, ResNet-8 and mini-Xception, fast against
# exact (both nearest) gave min cosine 0.960, 0.977 and 0.993, while an antialiasing filter
# instead of Keras's nearest gave 0.926, 0.754 and 0.938, with or without the scaling (bilinear
# scaled against bilinear unscaled: 1.000). Pillow's draft was kept over simplejpeg and
# PyTurboJPEG: the same libjpeg-turbo, already installed, behind the one decoder of every format.
DECODE_QUALITIES = ("exact", "fast")
# "pil" resizes as keras.utils.load_img does (Pillow, any of RESAMPLING); "keras-ops" as
# keras.ops.image.resize does on the TensorFlow backend, KerasHub's ImageConverter (see
# files/resizing.py: nearest, bilinear or bicubic, with or without antialias).
RESIZERS = ("pil", "keras-ops")


@dataclass(frozen=True)
class LoadOptions:
    """How images become arrays; the defaults are Keras's."""

    height: int
    width: int
    channels: int = 3
    resample: str = "nearest"
    keep_aspect: bool = False  # center-crop to the target aspect ratio before resizing
    exif: bool = False  # apply the EXIF orientation tag
    layout: str = "nhwc"  # the model input's layout: how arrays are read (ARRAY_FORMS)
    decode_quality: str = "exact"  # or "fast": see DECODE_QUALITIES
    resizer: str = "pil"  # or "keras-ops": see RESIZERS
    antialias: bool = False  # low-pass when downscaling; the keras-ops resizer only

    def __post_init__(self):
        if self.resample not in RESAMPLING:
            raise UsageError(f"unknown resampling {self.resample!r}; expected one of "
                             f"{', '.join(RESAMPLING)}")
        if self.decode_quality not in DECODE_QUALITIES:
            raise UsageError(f"decode quality {self.decode_quality!r}: expected exact (every "
                             "pixel, as Keras) or fast (JPEGs decoded at reduced size)")
        self._check_resizer()

    def _check_resizer(self):
        if self.resizer not in RESIZERS:
            raise UsageError(f"unknown resizer {self.resizer!r}; expected pil (as "
                             "keras.utils.load_img) or keras-ops (as keras.ops.image.resize, "
                             "KerasHub's ImageConverter)")
        if self.keras_ops and self.resample not in resizing.INTERPOLATIONS:
            raise UsageError(f"resampling {self.resample!r} with the keras-ops resizer; "
                             f"expected one of {', '.join(resizing.INTERPOLATIONS)}")
        if self.antialias and not self.keras_ops:
            # Pillow's filters other than nearest always antialias: there is nothing to turn on.
            raise UsageError("antialias=True needs resizer='keras-ops'; the pil resizer "
                             "antialiases with every filter but nearest already")

    @property
    def keras_ops(self) -> bool:
        return self.resizer == "keras-ops"

    @property
    def fast(self) -> bool:
        return self.decode_quality == "fast"


def list_images(folder) -> list[str]:
    """Every image under `folder`, recursively, sorted, extensions matched case-insensitively."""
    return list(iter_images(folder))


def iter_images(folder):
    """list_images's paths one by one, as the folders are read (files/walk.py)."""
    return (path for path in walk.sorted_files(str(folder), walk.local_entries, os.sep)
            if path.lower().endswith(IMAGE_EXTENSIONS))


def nothing_found(inputs) -> UsageError:
    """The error for inputs that name no image at all."""
    named = ", ".join(map(str, inputs)) or "an empty list of inputs"
    return UsageError(f"no images found in {named} (looked for {' '.join(IMAGE_EXTENSIONS)}, "
                      "recursively); pass image files or folders that hold some")


def expand_inputs(items) -> list:
    """Replace each directory among `items` by the images it holds; keep everything else.

    The folder step of files/inputs.py, which turns a user's inputs into items: use that."""
    if isinstance(items, (str, Path, bytes, np.ndarray, Image.Image)):
        items = [items]
    expanded = []
    for item in items:
        if isinstance(item, (str, Path)) and os.path.isdir(item):
            expanded += list_images(item)
        else:
            expanded.append(item)
    return expanded


def describe(item) -> str:
    """A short name for an input, used as its key in outputs and error reports."""
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, np.ndarray):
        return f"<array {item.shape} {item.dtype}>"
    if isinstance(item, Image.Image):
        return f"<PIL {item.mode} {item.size[0]}x{item.size[1]}>"
    return f"<{type(item).__name__}>"


def load(item, options: LoadOptions) -> np.ndarray:
    """One input (path, bytes, PIL image or HWC array) as a float32 (H, W, C) array."""
    return load_native(item, options).astype(np.float32, copy=False)


def load_native(item, options: LoadOptions, lap=None) -> np.ndarray:
    """A path, bytes or PIL image decoded, converted and resized, as an (H, W, C) array of the
    image's own pixel type (uint8 for most files) with the pil resizer, float32 with keras-ops
    (its resize interpolates in float32), or an array read as `load` reads it (float32): what
    `load` makes float32. `lap(stage)`, when given, is called as the image is opened (its
    header read), decoded and resized (fexport.runtime.stages.Laps)."""
    lap = lap or _no_lap
    if isinstance(item, np.ndarray):
        return _from_array(item, options)
    if not isinstance(item, (str, Path, bytes, Image.Image)):
        raise ImageError(f"{describe(item)}: expected a file path, bytes, a PIL image or a "
                         "numpy array")
    image = item if isinstance(item, Image.Image) else _open(item, options, lap)
    try:
        array = _resized(_convert(image, options), options)
        lap("resize")
        return array
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises many untyped errors (ValueError, OSError...)
        raise ImageError(f"{describe(item)}: cannot convert this {image.mode} image of "
                         f"{image.size[0]}x{image.size[1]} pixels ({_reason(exc)})") from exc


def _no_lap(stage: str) -> None:
    """No timing asked for."""


def _open(item, options: LoadOptions, lap=_no_lap) -> Image.Image:
    """Decode an image from a path or bytes; every failure is an ImageError naming the input.

    A path is read through Pillow, which reads only what the format needs: a huge file of junk
    costs its header, not its size. Only regular files are read (a FIFO would block forever).
    """
    name, draft = describe(item), _draft(options)
    if isinstance(item, bytes):
        return _decode(io.BytesIO(item), name, len(item), draft, lap)
    try:
        info = os.stat(item)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{name}: not a regular file; expected an image file")
        with open(item, "rb") as f:
            return _decode(f, name, info.st_size, draft, lap)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc


def _draft(options: LoadOptions):
    """For fast decoding, the (mode, size) a JPEG may be decoded at: at least the model's size
    (a center crop of it, too, keeps at least the model's size), in the model's colour mode."""
    if not options.fast:
        return None
    return ("L" if options.channels == 1 else "RGB"), (options.width, options.height)


def _decode(source, name, size, draft=None, lap=_no_lap) -> Image.Image:
    if not size:
        raise ImageError(f"{name}: the file is empty (0 bytes); expected an image")
    try:
        image = Image.open(source)
        if draft and image.format == "JPEG":
            image.draft(*draft)
        lap("open")
        image.load()  # the pixels are in memory now: the caller may close the file
        lap("decode")
        return image
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb "
                         f"({_reason(exc)})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image Pillow can read (unknown format or a damaged "
                         f"header); expected one of {', '.join(IMAGE_EXTENSIONS)}") from exc
    except Exception as exc:  # a hostile file reaches Pillow's plugins: any error, one answer
        raise ImageError(f"{name}: the image is damaged or truncated ({_reason(exc)})") from exc


def _reason(exc) -> str:
    """Pillow's own words, on one line and of bounded length, for a one-line answer."""
    return f"{type(exc).__name__}: {whole_sentences(str(exc))}"


def _convert(image: Image.Image, options: LoadOptions) -> Image.Image:
    if options.exif:
        image = ImageOps.exif_transpose(image)
    if options.channels == 1:
        return image if image.mode in GRAYSCALE_MODES else image.convert("L")
    if options.channels == 3:
        return image if image.mode == "RGB" else image.convert("RGB")
    raise ImageError(f"images can feed models with 1 or 3 channels; this model has "
                     f"{options.channels}. Pass arrays of shape (H, W, {options.channels}).")


def _resized(image: Image.Image, options: LoadOptions) -> np.ndarray:
    """A converted image at the model's size, by the chosen resizer: with keras-ops the
    full-size pixels through files/resizing.py, as float32 (like TF, it leaves an image already
    at the size unchanged), else through Pillow, in the image's own pixel type."""
    if not options.keras_ops:
        return _native_array(_resize(image, options))
    return resizing.resize(_native_array(image), options.height, options.width,
                           options.resample, options.antialias, options.keep_aspect)


def _resize(image: Image.Image, options: LoadOptions) -> Image.Image:
    size = (options.width, options.height)
    if image.size == size:
        return image
    resample = RESAMPLING[options.resample]
    if not options.keep_aspect:
        return image.resize(size, resample)
    return image.resize(size, resample, box=center_crop_box(image.size, size))


def center_crop_box(image_size, target_size):
    """The largest centered box with the target's aspect ratio, computed as Keras does."""
    (width, height), (target_w, target_h) = image_size, target_size
    crop_h = min(height, (width * target_h) // target_w)
    crop_w = min(width, (height * target_w) // target_h)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return (left, top, left + crop_w, top + crop_h)


def _native_array(image: Image.Image) -> np.ndarray:
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


# The array shapes a model input of each layout accepts (N: a batch), tried in this order: the
# model's own layout first, so an array that fits two readings (a (3, 3, 3) array for a 3x3
# RGB model) is read in the model's layout. "HW" is one grayscale image without a channel axis.
ARRAY_FORMS = {"nhwc": ("NHWC", "HWC", "HW"),
               "nchw": ("NCHW", "CHW", "NHWC", "HWC", "HW"),
               "nhw": ("NHW", "HW", "NHWC", "HWC")}


def _from_array(array: np.ndarray, options: LoadOptions) -> np.ndarray:
    """Real-valued arrays at the model's size pass through; uint8 arrays of other sizes are
    converted by PIL and resized by the chosen resizer; anything else (other shapes, complex,
    strings, objects, no pixels) is refused."""
    form = _form_of(array, options, batch=False)
    if form and array.dtype.kind in "biuf":
        return _as_hwc(array, form).astype(np.float32, copy=False)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] in (1, 3, 4) \
            and array.size:
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        return _resized(_convert(image, options), options).astype(np.float32, copy=False)
    raise ImageError(
        f"{describe(array)}: this model takes arrays shaped {accepted_shapes(options)} (bool, "
        "integer or float), or non-empty uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) "
        "images of another size to resize; resize it first or pass the image file")


def accepted_shapes(options: LoadOptions) -> str:
    sizes = {"N": "N", "H": options.height, "W": options.width, "C": options.channels}
    return ", ".join("(" + ", ".join(str(sizes[axis]) for axis in form) + ")"
                     for form in _forms(options))


def _forms(options):
    return [f for f in ARRAY_FORMS[options.layout] if "C" in f or options.channels == 1]


def _form_of(array, options, batch) -> str | None:
    """The first form of ARRAY_FORMS that `array`'s shape fits exactly, batch or single."""
    sizes = {"H": options.height, "W": options.width, "C": options.channels}
    for form in _forms(options):
        if form.startswith("N") == batch and len(form) == array.ndim and all(
                axis == "N" or size == sizes[axis] for axis, size in zip(form, array.shape)):
            return form
    return None


def _as_hwc(array, form) -> np.ndarray:
    """An array in `form` as channels-last ((N,) H, W, C), without copying where it can."""
    order = [form.index(axis) for axis in "NHWC" if axis in form]
    array = array.transpose(order)
    return array if "C" in form else array[..., None]


def from_nhwc(x, layout, backend=np):
    """NHWC pixels into a model input's `layout` ("nhwc", "nchw" or "nhw"), with numpy or,
    inside the exported graph, tensorflow (`backend`)."""
    if layout == "nchw":
        return backend.transpose(x, (0, 3, 1, 2))
    if layout == "nhw":
        return x[..., 0]
    return x


def to_nhwc(x, layout, backend=np):
    """A model input in `layout` back to NHWC pixels."""
    if layout == "nchw":
        return backend.transpose(x, (0, 2, 3, 1))
    if layout == "nhw":
        return x[..., None]
    return x


def split_batch_arrays(items, options: LoadOptions | None = None) -> list:
    """Turn batch arrays among `items` into one array per image: those that fit one of the
    model's batch forms (ARRAY_FORMS), then any other 4-D array along its first axis."""
    flat = []
    for item in items:
        form = _form_of(item, options, batch=True) \
            if isinstance(item, np.ndarray) and options else None
        if form:
            flat += list(_as_hwc(item, form))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            flat += list(item)
        else:
            flat.append(item)
    return flat
