"""`keras.ops.image.resize` of the TensorFlow backend, in numpy: what KerasHub's ImageConverter
does to an image, without TensorFlow.

`resize(array, height, width, interpolation, antialias, crop_to_aspect_ratio)` gives what
`keras.ops.image.resize(array, (height, width), ...)` gives on a float32 (H, W, C) array:
Keras's center crop to the target aspect ratio (float32 arithmetic, truncated), then
`tf.image.resize` with half-pixel centers. Each TF kernel is reproduced with its own rule:

- nearest (`ResizeNearestNeighbor`): input index floor((i + 0.5) * in / out), clamped; TF
  ignores `antialias` for it, and so does this;
- bilinear (`ResizeBilinear`): taps at floor/ceil of (i + 0.5) * in / out - 0.5, clamped to
  the edge, so an edge pixel repeats;
- bicubic (`ResizeBicubic`): Keys's cubic with a = -0.5 looked up in TF's 1024-entry table;
  taps outside the image get no weight and the other weights are renormalized;
- antialias with bilinear or bicubic (`ScaleAndTranslate`, "triangle" and "keyscubic", Keys
  a = -0.5 computed, not tabulated): when downscaling the kernel is widened by in / out; taps
  outside the image are dropped and the weights renormalized.

Weights and indices are computed as TF computes them, in float32, so only the order of the
float32 sums differs (a BLAS product here, TF's loops there): measured against Keras 3.15.1 on
TensorFlow 2.21 (CPU, numpy 2.4), random 0..255 arrays and real photos differ by at most
1e-4 without antialias and 2.2e-4 with it (a 4000x3000 photo to 224x224); nearest is bit for
bit. numpy only: fexport.runtime never imports TensorFlow or Keras.
"""

from __future__ import annotations

import numpy as np

from fexport.errors import UsageError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
F32 = np.float32
HALF = F32(0.5)
# TF's ResizeBicubic looks the cubic's weights up in a table of 1024 steps, at the nearest step.
TABLE_SIZE = 1024
# Output rows computed by one matrix product, against the band of input rows they read: few
# enough that the band stays narrow (8 antialiased bicubic outputs of 3000 -> 224 read ~160
# rows, 55 each), enough that the product runs at BLAS speed (35 ms for 4000x3000 -> 224).
ROWS_PER_PRODUCT = 8


def resize(array, height: int, width: int, interpolation: str = "bilinear",
           antialias: bool = False, crop_to_aspect_ratio: bool = True) -> np.ndarray:
    """An (H, W, C) array as float32 (height, width, C), as `keras.ops.image.resize` makes it
    with the TensorFlow backend from the array as float32. Any real dtype is taken (uint8 pixels
    are made float32 only where read, which spares a full-size float32 copy of a photo). An
    image already at (height, width) after the crop comes back unchanged (as float32), as TF
    leaves it: each of its kernels at scale 1 weighs one pixel by exactly 1."""
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"unknown interpolation {interpolation!r} for a Keras resize; "
                         f"expected one of {', '.join(INTERPOLATIONS)}")
    image = np.asarray(array)
    if crop_to_aspect_ratio:
        top, left, crop_h, crop_w = crop_box(image.shape[0], image.shape[1], height, width)
        image = image[top:top + crop_h, left:left + crop_w]
    if image.shape[:2] == (height, width):
        return image.astype(F32)
    rows = axis_plan(interpolation, antialias, image.shape[0], height)
    columns = axis_plan(interpolation, antialias, image.shape[1], width)
    # Rows first (TF's bicubic and ScaleAndTranslate order): the large input is read once.
    halfway = _apply(rows, image).transpose(1, 0, 2)
    return np.ascontiguousarray(_apply(columns, halfway).transpose(1, 0, 2), F32)


def crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple:
    """(top, left, crop height, crop width) of Keras's center crop to the target's aspect
    ratio: float32 quotients truncated to int32, at least 1 pixel, start halved and truncated.
    Not keras.utils.load_img's integer rule, which can be a pixel off from this one."""
    crop_h = max(min(height, int(F32(width * target_h) / F32(target_w))), 1)
    crop_w = max(min(width, int(F32(height * target_w) / F32(target_h))), 1)
    return int(F32(height - crop_h) / F32(2)), int(F32(width - crop_w) / F32(2)), crop_h, crop_w


def axis_plan(interpolation: str, antialias: bool, size_in: int, size_out: int) -> np.ndarray:
    """How one axis is resampled: for nearest the input index of each output (int64), else an
    (out, in) float32 weight matrix whose row i weighs the inputs of output i."""
    if interpolation == "nearest":
        return _nearest_indices(size_in, size_out)
    if antialias:
        kernel, radius = (_triangle, 1.0) if interpolation == "bilinear" else (_keys_cubic, 2.0)
        return _scale_and_translate_weights(kernel, radius, size_in, size_out)
    if interpolation == "bilinear":
        return _bilinear_weights(size_in, size_out)
    return _bicubic_weights(size_in, size_out)


def _scale(size_in: int, size_out: int) -> np.float32:
    """TF's resize scale: in / out, a float32 quotient."""
    return F32(size_in) / F32(size_out)


def _half_pixel(size_in: int, size_out: int) -> np.ndarray:
    """TF's HalfPixelScaler: where each output's center falls in input pixels, in float32."""
    return (np.arange(size_out, dtype=F32) + HALF) * _scale(size_in, size_out) - HALF


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """ResizeNearestNeighbor with half-pixel centers: floor((i + 0.5) * scale), no -0.5."""
    centers = (np.arange(size_out, dtype=F32) + HALF) * _scale(size_in, size_out)
    return np.clip(np.floor(centers).astype(np.int64), 0, size_in - 1)


def _bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """ResizeBilinear: the two pixels around each center, clamped to the edge, weighed by the
    fraction. Summed in float64 so an edge pixel taken twice weighs exactly 1."""
    centers = _half_pixel(size_in, size_out)
    floor = np.floor(centers)
    lerp = (centers - floor).astype(np.float64)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(centers).astype(np.int64), size_in - 1)
    return _matrix(size_in, np.stack([lower, upper], 1), np.stack([1 - lerp, lerp], 1))


def _bicubic_weights(size_in: int, size_out: int) -> np.ndarray:
    """ResizeBicubic with half-pixel centers: four taps around floor(center), their weights
    from TF's table at the nearest 1/1024, taps outside the image dropped, renormalized."""
    centers = _half_pixel(size_in, size_out)
    base = np.floor(centers)
    offset = np.rint((centers - base) * F32(TABLE_SIZE)).astype(np.int64)  # lrintf
    table = _cubic_table()
    weights = np.stack([table[offset * 2 + 1], table[offset * 2],
                        table[(TABLE_SIZE - offset) * 2], table[(TABLE_SIZE - offset) * 2 + 1]], 1)
    taps = base.astype(np.int64)[:, None] + np.arange(-1, 3)
    return _normalized(size_in, taps, weights)


def _cubic_table(a: float = -0.5) -> np.ndarray:
    """TF's InitCoeffsTable: at x = i / 1024, the weights of the near (even entries) and far
    (odd entries) taps, computed in double and stored as float32."""
    x = np.arange(TABLE_SIZE + 1, dtype=np.float64) / TABLE_SIZE
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    return np.stack([near, far], 1).astype(F32).ravel()


def _scale_and_translate_weights(kernel, radius: float, size_in: int, size_out: int):
    """ScaleAndTranslate's spans: the kernel, widened by in / out when downscaling, centered on
    (i + 0.5) * in / out; taps outside the image dropped, the rest renormalized."""
    inv_scale = F32(1.0 / float(F32(size_out) / F32(size_in)))  # a double quotient, as in TF
    kernel_scale = max(inv_scale, F32(1))
    reach = F32(radius) * kernel_scale
    samples = (np.arange(size_out, dtype=F32) + HALF) * inv_scale
    starts = np.clip(np.ceil(samples - reach - HALF), 0, size_in - 1).astype(np.int64)
    ends = np.clip(np.floor(samples + reach - HALF), 0, size_in - 1).astype(np.int64) + 1
    span = min(2 * int(np.ceil(reach)) + 1, size_in)
    taps = starts[:, None] + np.arange(span)
    distance = np.abs((taps.astype(F32) + HALF - samples[:, None]) * (F32(1) / kernel_scale))
    weights = np.where(taps < ends[:, None], kernel(distance), F32(0))
    return _normalized(size_in, np.minimum(taps, size_in - 1), weights)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.where(x < 1, F32(1) - x, F32(0)).astype(F32)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys's cubic, a = -0.5, as sampling_kernels.h computes it in float32."""
    outer = ((F32(-0.5) * x + F32(2.5)) * x - F32(4)) * x + F32(2)
    inner = ((F32(1.5) * x - F32(2.5)) * x) * x + F32(1)
    return np.where(x >= 2, F32(0), np.where(x >= 1, outer, inner)).astype(F32)


def _normalized(size_in: int, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Drop the taps outside the image, divide the rest by their float32 sum taken in tap
    order, as TF does (a sum too close to 0 is left undivided, as there)."""
    weights = np.where((taps >= 0) & (taps < size_in), weights, F32(0)).astype(F32)
    total = np.zeros(len(weights), F32)
    for column in weights.T:
        total += column
    usable = np.abs(total) >= F32(1000) * np.finfo(F32).tiny
    weights = np.where(usable[:, None], weights * (F32(1) / np.where(usable, total, 1))[:, None],
                       weights)
    return _matrix(size_in, np.clip(taps, 0, size_in - 1), weights)


def _matrix(size_in: int, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The (out, in) float32 matrix of per-output taps; weights on the same input add up."""
    matrix = np.zeros((len(taps), size_in), np.float64)
    np.add.at(matrix, (np.arange(len(taps))[:, None], taps), weights)
    return matrix.astype(F32)


def _apply(plan: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Resample the first axis of `image` by `plan` (axis_plan), as float32. Only the input
    rows some output reads are kept, then each few output rows are one product with the band
    of input rows they read: the cost follows the kernel's reach, not the input's full size."""
    if plan.ndim == 1:
        return image[plan]  # nearest: a gather, exact, in the input's dtype
    used = np.flatnonzero(plan.any(axis=0))
    if len(used) < len(image):
        plan, image = plan[:, used], image[used]
    out = np.zeros((len(plan), image[0].size), F32)
    for first in range(0, len(plan), ROWS_PER_PRODUCT):
        block = plan[first:first + ROWS_PER_PRODUCT]
        read = np.flatnonzero(block.any(axis=0))
        if read.size:
            low, high = read[0], read[-1] + 1
            band = image[low:high].reshape(high - low, -1).astype(F32, copy=False)
            np.matmul(block[:, low:high], band, out=out[first:first + len(block)])
    return out.reshape(len(plan), *image.shape[1:])
