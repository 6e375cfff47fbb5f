"""Batches decoded in place: every image is written into its slot of a preallocated batch that
is already the engine's input, in the model's layout and dtype.

Before, each image was decoded, made float32, stacked into a new batch and then laid out and
cast again for the model: three copies of every pixel on the host. Now a decoder converts once,
into the slot (uint8 stays uint8 for a graph that takes uint8), and the engine reads the batch
as it is. Where the graph does not apply its preprocessing, the batch is float32 channels-last
pixels, and `to_model_input` applies it on the way to the engine, as before.

The values are those of the copying path exactly: a uint8 image in a float32 slot is the same
cast, and a float image in a uint8 slot is rounded and clipped as `to_model_input` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fexport.errors import ImageError

from .contract import to_model_input
from .files import images
from .stages import DecodeTimes, Laps


@dataclass(frozen=True)
class BatchLayout:
    """The shape, dtype and layout of one image in a batch buffer."""

    shape: tuple  # one image, in `layout`
    dtype: str  # "float32" or "uint8"
    layout: str  # "nhwc", "nchw" or "nhw"
    model_ready: bool  # True: the batch is the model's input as it is

    @classmethod
    def of(cls, contract) -> BatchLayout:
        spec = contract.input
        if contract.preprocessing_baked:
            return cls(spec.shape(1)[1:], spec.dtype, spec.layout, True)
        return cls((spec.height, spec.width, spec.channels), "float32", "nhwc", False)

    def nbytes(self, size: int) -> int:
        return size * int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def empty(self, size: int) -> np.ndarray:
        return np.empty((size, *self.shape), self.dtype)

    def view(self, memory, size: int, offset: int = 0) -> np.ndarray:
        """A batch of `size` images in `memory` (shared memory's buffer), from byte `offset`."""
        return np.ndarray((size, *self.shape), self.dtype, buffer=memory, offset=offset)

    def model_input(self, contract, batch: np.ndarray) -> np.ndarray:
        return batch if self.model_ready else to_model_input(contract, batch)


def write(slot: np.ndarray, pixels: np.ndarray, layout: str) -> None:
    """One image's (H, W, C) pixels into its slot, in the slot's layout and dtype."""
    pixels = images.from_nhwc(pixels[None], layout)[0]
    if slot.dtype == np.uint8 and pixels.dtype != np.uint8:  # as to_model_input rounds
        pixels = np.clip(np.rint(pixels.astype(np.float32, copy=False)), 0, 255)
    np.copyto(slot, pixels, casting="unsafe")


def fill(batch: np.ndarray, pairs, options: images.LoadOptions, layout: str) -> Filled:
    """Decode each (slot, item) of `pairs` into `batch[slot]`, timing each image's stages."""
    errors, laps = [], Laps()
    for slot, item in pairs:
        laps.start()
        try:
            write(batch[slot], images.load_native(item, options, laps.lap), layout)
            laps.lap("write")
            errors.append(None)
        except ImageError as exc:
            errors.append(exc)
    return Filled(errors, laps.times)


@dataclass
class Filled:
    """What a decoder did with its pairs: None or the ImageError saying why not, per pair,
    and the seconds it spent on each stage."""

    errors: list
    times: DecodeTimes
