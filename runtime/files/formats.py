"""What the GPU decoder is given and what stays on the CPU, decided from a file's own bytes; and
the nearest-neighbour rows and columns Pillow reads, so that a resize elsewhere matches it.

`--decode gpu` (fexport.runtime.gpu_decode) sends only baseline JPEGs in YCbCr or grayscale to
nvImageCodec. Everything else goes through the CPU loader (files/images.py) instead, so a batch
always completes: another format (PNG, ...: the format is read from the header, never from the
name), progressive, lossless or arithmetic-coded JPEGs, CMYK and YCCK (4 components), Adobe RGB
JPEGs (no colour transform), images above Pillow's decompression-bomb limit (the CPU loader
refuses them with its reason), and anything whose header does not parse. The decision is one
pure function of the header, `cpu_reason`, so the tests run it on real files without a GPU.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import images

HEADER_BYTES = 1 << 16  # markers before the frame header: EXIF and ICC segments fit in 64 kB
BASELINE = (0xC0, 0xC1)  # SOF0 (baseline) and SOF1 (extended sequential, Huffman)
# Every other start-of-frame marker: progressive, lossless, hierarchical or arithmetic-coded.
OTHER_FRAMES = {0xC2: "progressive", 0xC3: "lossless", 0xC5: "hierarchical",
                0xC6: "hierarchical progressive", 0xC7: "hierarchical lossless",
                0xC9: "arithmetic-coded", 0xCA: "arithmetic-coded progressive",
                0xCB: "arithmetic-coded lossless", 0xCD: "hierarchical arithmetic-coded",
                0xCE: "hierarchical arithmetic-coded progressive",
                0xCF: "hierarchical arithmetic-coded lossless"}
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
              (b"RIFF", "WebP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def cpu_reason(header: bytes) -> str | None:
    """Why the file whose first bytes are `header` is decoded on the CPU, or None when it is a
    JPEG the GPU decodes: baseline, 1 or 3 components in YCbCr, within Pillow's pixel limit."""
    if not header.startswith(b"\xff\xd8"):
        return f"not a JPEG ({_format_of(header)})"
    frame, adobe_rgb = _frame(header)
    if frame is None:
        return "a JPEG whose frame header was not found in its first 64 kB"
    marker, height, width, components = frame
    if marker in OTHER_FRAMES:
        return f"a {OTHER_FRAMES[marker]} JPEG"
    if components == 4:
        return "a CMYK or YCCK JPEG (4 components)"
    if components not in (1, 3) or (components == 3 and adobe_rgb):
        return f"a JPEG of {components} components{' in RGB' if adobe_rgb else ''}"
    if height * width > 2 * Image.MAX_IMAGE_PIXELS or not height * width:
        return f"a JPEG of {width}x{height} pixels (the CPU loader decides)"
    return None


def _format_of(header: bytes) -> str:
    return next((name for signature, name in SIGNATURES if header.startswith(signature)),
                "an unknown format")


def _frame(data: bytes):
    """(marker, height, width, components) of the JPEG's start of frame, or None; and whether
    an Adobe segment says the 3 components are RGB, not YCbCr (its transform flag 0)."""
    pos, adobe_rgb = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None, adobe_rgb
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEE and data[pos + 4:pos + 9] == b"Adobe" and pos + 15 < len(data):
            adobe_rgb = data[pos + 15] == 0
        if (marker in BASELINE or marker in OTHER_FRAMES) and pos + 10 <= len(data):
            body = data[pos + 4:pos + 10]
            return (marker, int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"),
                    body[5]), adobe_rgb
        if marker == 0xD9 or marker == 0xDA:  # end of image, or scan data before any frame
            return None, adobe_rgb
        pos += 2 + length
    return None, adobe_rgb


def resize_indices(size, options) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns files/images.py's pil resizer reads for an image of `size` (width,
    height) with nearest resampling under `options`: none moved at the model's size, the
    center crop with keep_aspect."""
    target = (options.width, options.height)
    if tuple(size) == target:
        return np.arange(target[1], dtype=np.int64), np.arange(target[0], dtype=np.int64)
    box = images.center_crop_box(size, target) if options.keep_aspect else None
    return nearest_indices(size, target, box)


def nearest_indices(size, target, box=None) -> tuple[np.ndarray, np.ndarray]:
    """The source rows and columns (int64) that Pillow's nearest resize of an image of `size`
    (width, height) to `target` (width, height) reads, within `box` (a crop, as resize's box).

    Asked of Pillow itself, not recomputed: a 1-pixel-high image holding each column's index,
    and a 1-pixel-wide one holding each row's, resized as the image would be. Its rounding,
    box and all, is then Pillow's by construction, and a gather by these indices is
    `image.resize(target, NEAREST, box)` pixel for pixel."""
    (width, height), (target_w, target_h) = size, target
    box = box or (0, 0, width, height)
    columns = Image.fromarray(np.arange(width, dtype=np.int32)[None, :], "I")
    rows = Image.fromarray(np.arange(height, dtype=np.int32)[:, None], "I")
    picked_columns = columns.resize((target_w, 1), Image.Resampling.NEAREST,
                                    box=(box[0], 0, box[2], 1))
    picked_rows = rows.resize((1, target_h), Image.Resampling.NEAREST,
                              box=(0, box[1], 1, box[3]))
    return (np.asarray(picked_rows, np.int64)[:, 0], np.asarray(picked_columns, np.int64)[0])
