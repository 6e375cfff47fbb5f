"""One served model: its extractor, its batcher, and the two ways images reach it.

Encoded image files are decoded off the event loop, in the app's decoding threads, exactly as
`fexport extract` decodes files (fexport.runtime.files.images, Keras-exact by default), after a
look at the header refuses images over the pixel limit. Pixel tensors come in the model's own
layout. Both become float32 NHWC pixels for the batcher; a bad image fails its own request,
naming the image and why, before anything of it is queued.
"""

from __future__ import annotations

import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from fexport.errors import ImageError, RequestError
from fexport.runtime.files import images

from .batcher import Batcher

PIXEL_DATATYPES = {"FP32": np.float32, "UINT8": np.uint8}


class ModelService:
    """`extractor` served under `name`; `decoder` is the app's shared decoding pool."""

    def __init__(self, name, extractor, config, decoder: ThreadPoolExecutor, observer):
        self.name, self.extractor, self.config = name, extractor, config
        self._decoder, self._observer = decoder, observer
        self._compute = ThreadPoolExecutor(1, thread_name_prefix=f"fexport-{name}")
        self.batcher = Batcher(extractor.predict, self._compute,
                               max_batch_size=config.max_batch_size, max_delay=config.max_delay,
                               max_queue=config.max_queue, observer=observer)
        self.ready = False
        self.failure: str | None = None  # why the model is not ready, once that is known

    @property
    def spec(self):
        return self.extractor.contract.input

    def pixel_shape(self) -> list[int]:
        """The pixel tensor's shape, -1 for the batch axis (the model's own layout)."""
        return [-1, *self.spec.shape(1)[1:]]

    async def start(self) -> None:
        """Start batching, and run one warm-up batch of max_batch_size: until then the model
        is not ready (the engine's first run allocates and picks kernels)."""
        self.batcher.start()
        spec = self.spec
        zeros = np.zeros((self.config.max_batch_size, spec.height, spec.width, spec.channels),
                         np.float32)
        try:
            await asyncio.get_running_loop().run_in_executor(self._compute,
                                                             self.extractor.predict, zeros)
        except Exception as exc:  # the model stays not ready, and says why
            self.failure = f"the warm-up batch failed: {type(exc).__name__}: {exc}"
            return
        self.ready = True

    async def stop(self) -> None:
        await self.batcher.stop()
        self._compute.shutdown(wait=True)
        self.extractor.close()

    async def from_files(self, files: list[bytes]) -> np.ndarray:
        """Features of encoded image files, row i for file i."""
        with self.batcher.admit(len(files)):
            started = time.perf_counter()
            deadline = started + self.config.request_timeout
            loop = asyncio.get_running_loop()
            decoded = await asyncio.gather(*[loop.run_in_executor(
                self._decoder, self._decode, data, i) for i, data in enumerate(files)])
            self._observer.decoded(time.perf_counter() - started)
            return await self._features(np.stack(decoded) if decoded else self._none(),
                                        deadline)

    async def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Features of a pixel tensor in the model's layout, (N, ...) as pixel_shape() says."""
        self.check_pixels(pixels)
        deadline = time.perf_counter() + self.config.request_timeout
        with self.batcher.admit(len(pixels)):
            nhwc = images.to_nhwc(pixels, self.spec.layout).astype(np.float32, copy=False)
            return await self._features(nhwc, deadline)

    def check_pixels(self, pixels: np.ndarray) -> None:
        expected = self.pixel_shape()
        if pixels.ndim != len(expected) or list(pixels.shape[1:]) != expected[1:]:
            raise RequestError(f"a pixel tensor of shape {list(pixels.shape)}: model "
                               f"{self.name!r} takes shape {expected} (the model's layout, "
                               f"{self.spec.layout.upper()})")

    async def _features(self, pixels: np.ndarray, deadline: float) -> np.ndarray:
        """Features from the batcher, by `deadline` (counted from the request's admission, so
        decoding counts against it too)."""
        if not len(pixels):
            return np.zeros((0, self.extractor.feature_dim), np.float32)
        return await self.batcher.submit(pixels, deadline)

    def _decode(self, data: bytes, index: int) -> np.ndarray:
        """One file's float32 (H, W, C) pixels; ImageError naming it by its index."""
        try:
            self._check_size(data)
            return images.load(data, self.extractor.load_options)
        except ImageError as exc:
            reason = str(exc).removeprefix("<bytes>: ")
            raise ImageError(f"image {index}: {reason}") from None

    def _check_size(self, data: bytes) -> None:
        """Refuse an image over the pixel limit from its header, before decoding it."""
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # not an image, or a bomb by Pillow's own limit: load says which
            return
        if width * height > self.config.max_image_pixels:
            raise ImageError(f"{width}x{height} pixels ({width * height}) is over this "
                             f"server's limit of {self.config.max_image_pixels} pixels an "
                             "image (a guard against decompression bombs): send it smaller")

    def _none(self) -> np.ndarray:
        spec = self.spec
        return np.zeros((0, spec.height, spec.width, spec.channels), np.float32)
