"""The public feature extractor: images in, float32 (N, d) features out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fexport.errors import ImageError

from . import backends, decoding
from .backends.device_batches import DeviceBatch
from .batches import BatchLayout
from .contract import infer_contract, stored_contract, to_model_input
from .files import images
from .files.inputs import iter_items
from .on_error import FAIL, check_on_error
from .stages import StageTimes, timing


@dataclass
class Batch:
    """One batch's result: features of the inputs that loaded, and why the others did not."""

    keys: list[str]
    features: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PixelBatch:
    """One batch's engine input: the pixels of the inputs that loaded, and why the others did
    not."""

    keys: list[str]
    pixels: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)


def load_options_for(contract, resample=None, keep_aspect=None, exif=False,
                     decode_quality="exact") -> images.LoadOptions:
    """How image files are loaded for `contract`. By default as the model's own pipeline does:
    the contract's `resize` (a KerasHub model's ImageConverter: keras.ops.image.resize) where
    it has one, else Keras's load_img (nearest, no crop). `resample` or `keep_aspect` given:
    Pillow's resampling with them, as before."""
    spec, resize = contract.input, contract.resize
    if resize and resample is None and keep_aspect is None:
        return images.LoadOptions(
            spec.height, spec.width, spec.channels, resize["interpolation"],
            resize["crop_to_aspect_ratio"], exif, spec.layout, decode_quality,
            resizer="keras-ops", antialias=resize["antialias"])
    return images.LoadOptions(spec.height, spec.width, spec.channels, resample or "nearest",
                              bool(keep_aspect), exif, spec.layout, decode_quality)


class FeatureExtractor:
    """Extract features with an fexport ONNX model, using only numpy, pillow and onnxruntime.

    `device` is "auto" (CUDA when it really loads, else CPU with a warning), "cpu", "cuda" or
    "tensorrt" (raise DeviceError when CUDA or TensorRT does not load). For an ONNX file made
    elsewhere pass `input_size=(height, width)`. One extractor may be shared by many threads.

    Inputs are image paths, folders, bytes, PIL images or numpy arrays. Arrays may hold one image
    or a batch, in the layout of the model's input or channels-last: for a (N, C, H, W) model
    (N, C, H, W), (C, H, W), (N, H, W, C) or (H, W, C); for a grayscale (N, H, W) model
    (N, H, W), (H, W), (N, H, W, 1) or (H, W, 1); for a (N, H, W, C) model (N, H, W, C) or
    (H, W, C). An array whose shape fits two readings (a (3, 3, 3) array for a 3x3 RGB model)
    is read in the model's own layout. Any other shape is refused with the shapes accepted.

    `backend` ("auto", "onnxruntime", "openvino") and `precision` ("auto": the file's own,
    "fp32", "bf16") choose the engine by the rule in fexport.runtime.backends; `ran` (and
    `backend`, `device`, `precision`) says what really runs, read back from the engine.

    Images decode ahead of inference in `workers` threads, or with `decode="processes"` in as
    many processes, which keep decoding past the GIL on many-core hosts feeding a GPU (see
    fexport.runtime.decoding); `close()` ends the processes. `decode_quality="fast"` decodes
    JPEGs at reduced size before the resize (fexport.runtime.files.images, DECODE_QUALITIES):
    faster on large photos, no longer Keras-exact; `fexport verify-decode`
    measures the difference on one's own images. The default, "exact", is Keras's loading.
    `decode="gpu"` (the gpu-decode extra, on CUDA) decodes JPEGs on the GPU with nvImageCodec
    and keeps the batch there for the engine, with a CPU fallback per file (`decoded` counts
    both); not Keras-exact either: `fexport verify-decode --decode gpu` measures it.
    """

    def __init__(self, path, device="auto", threads=None, *, backend="auto", precision="auto",
                 input_size=None, resample=None, keep_aspect=None, exif=False, workers=4,
                 decode="threads", decode_quality="exact"):
        self._settings = dict(path=str(path), device=device, threads=threads, backend=backend,
                              precision=precision, input_size=input_size, resample=resample,
                              keep_aspect=keep_aspect, exif=exif, workers=workers, decode=decode,
                              decode_quality=decode_quality)
        self._open(**self._settings)

    def _open(self, path, device, threads, backend, precision, input_size, resample,
              keep_aspect, exif, workers, decode, decode_quality="exact"):
        self.path, self.workers = path, max(1, int(workers))
        self._decoder = decoding.decoder(decode, self.workers)
        stored = stored_contract(path)
        self.engine = backends.open_backend(path, stored, backend, device, precision, threads)
        self.contract = stored or infer_contract(self.engine, path, input_size)
        self.load_options = load_options_for(self.contract, resample, keep_aspect, exif,
                                             decode_quality)
        self._layout = BatchLayout.of(self.contract)
        if decode == "gpu":
            self._decoder.check(self.load_options, self._layout, self.engine.ran,
                                self.contract.input.batch)

    def __getstate__(self):
        return self._settings

    def __setstate__(self, settings):
        self._settings = settings
        self._open(**settings)

    @property
    def ran(self) -> backends.Ran:
        """The backend, device and precision that really run, as the engine reports them."""
        return self.engine.ran

    @property
    def backend(self) -> str:
        return self.ran.backend

    @property
    def device(self) -> str:
        return self.ran.device

    @property
    def precision(self) -> str:
        return self.ran.precision

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers, in order (empty on another backend)."""
        return self.engine.providers

    @property
    def options(self) -> dict:
        """The keyword arguments it was opened with, all but the path: another process opens
        the same model the same way with FeatureExtractor(path, **options)."""
        return {name: value for name, value in self._settings.items() if name != "path"}

    @property
    def threads(self):
        """The intra-op thread count asked for (None: onnxruntime's default, all cores)."""
        return self._settings["threads"]

    @property
    def decoded(self) -> dict | None:
        """With decode="gpu": the images decoded on the GPU and those that fell back to the
        CPU, with why, since it opened; None with other decoders."""
        tally = getattr(self._decoder, "tally", None)
        return None if tally is None else tally.to_dict()

    @property
    def feature_dim(self) -> int:
        return self.contract.feature_dim

    def __call__(self, inputs, batch_size=32):
        return self.extract(inputs, batch_size)

    def extract(self, inputs, batch_size=32) -> np.ndarray:
        """Features for every input, row i for input i; raises ImageError on a bad input."""
        parts = [batch.features for batch in self.stream(inputs, batch_size, on_error=FAIL)]
        if not parts:
            return np.zeros((0, self.feature_dim), np.float32)
        return np.concatenate(parts)

    def stream(self, inputs, batch_size=32, on_error="skip", stages: StageTimes | None = None):
        """Yield a Batch per `batch_size` inputs, decoding ahead in threads; bounded memory.

        `on_error` "skip" reports a bad input in its Batch's failures, "fail" raises ImageError.
        `stages`, when given, gathers the time spent waiting for decoding and in the engine.
        """
        check_on_error(on_error)
        for pending in self._decoded(inputs, batch_size):
            keys, pixels, failures = _settled(pending, on_error, stages)
            with timing(stages, "engine"):
                features = self._infer(self._layout.model_input(self.contract, pixels)) \
                    if len(keys) else self._empty()
            if stages is not None:
                stages.images += len(keys)
            yield Batch(keys, features, failures)

    def profile(self, inputs, batch_size=32) -> StageTimes:
        """Extract `inputs` once, keeping no features, and say where the time went: what
        `fexport extract --profile` and `fexport bench --images` print."""
        stages, started = StageTimes(), time.perf_counter()
        for _ in self.stream(inputs, batch_size, stages=stages):
            pass
        stages.total = time.perf_counter() - started
        return stages

    def pixels(self, inputs, batch_size=32, *, copy=True):
        """Yield a PixelBatch per `batch_size` inputs: the engine's input for the images that
        loaded, exactly as `stream` feeds it, and why the others did not load. With
        `copy=False` the pixels are the decoding buffer itself, valid until the next batch."""
        for pending in self._decoded(inputs, batch_size):
            keys, pixels, failures = _settled(pending, "skip", None)
            batch = self._layout.model_input(self.contract, pixels)
            yield PixelBatch(keys, np.array(batch) if copy else batch, failures)

    def _decoded(self, inputs, batch_size):
        """A PendingBatch per `batch_size` inputs, decoded into a ring of batch buffers."""
        size = max(1, int(batch_size))
        with self._decoder.ring(self._layout, size, decoding.depth(size, self.workers)) as ring:
            yield from ring.ahead(iter_items(inputs, self.load_options), size, self.load_options)

    def predict(self, arrays) -> np.ndarray:
        """Features for float32 (H, W, C) pixel arrays already at the model's size (a list, or
        one (N, H, W, C) array, which is used without a copy)."""
        pixels = arrays if isinstance(arrays, np.ndarray) and arrays.ndim == 4 else \
            np.stack(arrays)
        return self._infer(to_model_input(self.contract, pixels))

    def _infer(self, batch) -> np.ndarray:
        """Features for a batch of the model's input, in pieces of its fixed batch size."""
        size = self.contract.input.batch
        if size and len(batch) != size:
            return np.concatenate([self._run_padded(batch[i:i + size], size)
                                   for i in range(0, len(batch), size)])
        return self._run(batch)

    def _run_padded(self, batch, size):
        padding = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
        return self._run(np.concatenate([batch, padding]))[:len(batch)]

    def _run(self, batch):
        run = self.engine.run_on_device if isinstance(batch, DeviceBatch) else self.engine.run
        out = np.asarray(run(batch), dtype=np.float32)
        return out if self.contract.head == "none" else out.reshape(len(batch), -1)

    def _empty(self):
        return np.zeros((0, self.feature_dim), np.float32)

    def close(self) -> None:
        """End the decoding processes, if any, and free their shared memory (they start again
        when needed)."""
        self._decoder.close()


def _settled(pending, on_error, stages):
    """A decoded batch's keys and pixels of the images that loaded, and the failures."""
    with timing(stages, "decode_wait"):
        errors = pending.settle()
    if stages is not None:
        stages.decoders.add(pending.times)
    failures = [(key, str(error)) for key, error in zip(pending.keys, errors) if error]
    if failures and on_error == FAIL:
        raise ImageError(failures[0][1])
    good = [i for i, error in enumerate(errors) if error is None]
    pixels = pending.pixels if len(good) == len(errors) else pending.pixels[good]
    return [pending.keys[i] for i in good], pixels, failures
