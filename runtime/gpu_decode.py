"""`decode="gpu"`: JPEGs decoded in batches on the GPU by nvImageCodec, resized and kept there,
and run by ONNX Runtime's CUDA provider from the GPU's memory (the gpu-decode extra).

    files --read on the host--> baseline JPEGs --nvImageCodec, one batch--> device images
        --gather resize (backends/device_batches.py)--> device batch --I/O binding--> engine
    the others (files/formats.py says which) --the CPU loader--> host slot --copy--> device batch

It is not Keras-exact: nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's (fancy
upsampling is asked for, as Pillow's default), so it is a choice the user makes, as
`decode_quality="fast"` is, and `fexport verify-decode --decode gpu` measures the features'
cosine against exact decoding. The resize is Pillow's nearest exactly, on the decoded pixels.
Every file the GPU decoder is not given, or fails on, goes through the CPU loader instead, so a
batch always completes; `tally` counts both and why.

nvImageCodec is told to use its GPU backends only: its own CPU decoders are neither Keras's
loader nor faster than fexport's, and a file it cannot do on the GPU is better decoded exactly.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import threading
from pathlib import Path

import numpy as np

from fexport.errors import DeviceError, UsageError
from fexport.extras import install_command, require

from . import batches
from .backends.device_batches import DeviceBatch, DeviceResizer
from .backends.onnxruntime_backend import CUDA, GPU_DEVICES, onnxruntime
from .files import formats, images
from .rings import Ring, thread_pool
from .stages import Laps

MODULE = "nvidia.nvimgcodec"
EXTRA = "gpu-decode"
PURPOSE = "decode='gpu' (JPEGs decoded on the GPU by nvImageCodec)"
# Options for nvImageCodec's decoders: chroma upsampled as libjpeg-turbo does by default.
DECODER_OPTIONS = ":fancy_upsampling=1"
CUDA_RUNTIME = "libcudart.so.13"  # the CUDA 13 runtime of the gpu extra's nvidia-* wheels


def nvimgcodec():
    """The nvImageCodec module, or MissingDependencyError naming the gpu-decode extra."""
    return require(MODULE, PURPOSE)


def cuda_problem(available_providers) -> str | None:
    """Why ONNX Runtime cannot take device batches here (its `available_providers`), or None."""
    if CUDA in available_providers:
        return None
    return (f"decode 'gpu' needs ONNX Runtime's CUDA provider, and this onnxruntime offers "
            f"{', '.join(available_providers)} (the CPU build, or no CUDA). Fix: "
            f"{install_command(EXTRA)} on a machine with an NVIDIA GPU, or use "
            "decode='processes'")


class Tally:
    """How a run's images were decoded: on the GPU, or on the CPU and why."""

    def __init__(self):
        self.gpu, self.reasons, self._lock = 0, collections.Counter(), threading.Lock()

    def add(self, gpu: int, reasons) -> None:
        with self._lock:
            self.gpu += gpu
            self.reasons.update(reasons)

    @property
    def cpu(self) -> int:
        return sum(self.reasons.values())

    def to_dict(self) -> dict:
        return {"gpu": self.gpu, "cpu_fallback": self.cpu, "reasons": dict(self.reasons)}


class GpuDecoder:
    """nvImageCodec on one thread of this process, the CPU fallbacks on `workers` threads."""

    def __init__(self, workers: int, device_id: int = 0):
        self.module = nvimgcodec()
        problem = cuda_problem(onnxruntime().get_available_providers())
        if problem:
            raise DeviceError(problem)
        self.workers, self.device_id, self.tally, self._decoder = workers, device_id, Tally(), None

    def check(self, options: images.LoadOptions, layout: batches.BatchLayout, ran,
              fixed_batch=None) -> None:
        """Refuse, before any image, what device batches cannot feed."""
        if ran.device not in GPU_DEVICES:
            raise DeviceError(f"decode 'gpu' keeps batches on the GPU, and the model runs on "
                              f"{ran.device}: use device='cuda' (or 'auto' where CUDA loads)")
        if fixed_batch:
            raise UsageError(f"decode 'gpu' runs batches as they come, and this model takes "
                             f"exactly {fixed_batch} images a batch: use decode='processes'")
        if options.keras_ops or options.resample != "nearest" or options.channels != 3:
            raise UsageError("decode 'gpu' resizes RGB images with nearest, as Keras's load_img; "
                             f"this model needs {options.channels} channel(s) with "
                             f"{options.resizer} {options.resample}: use decode='processes'")
        if not layout.model_ready:
            raise UsageError("decode 'gpu' needs a model that applies its preprocessing in its "
                             "graph (an fexport export); use decode='processes'")

    @contextlib.contextmanager
    def ring(self, layout: batches.BatchLayout, size: int, count: int):
        ort = onnxruntime()
        buffers = [DeviceBatch(ort, layout.shape, layout.dtype, size, "cuda", self.device_id)
                   for _ in range(count)]
        resizer = DeviceResizer(ort, layout.dtype, layout.layout, "cuda", self.device_id)
        with thread_pool(1) as gpu, thread_pool(self.workers) as cpu:
            def submit(index, pairs, options):
                return [(pairs, gpu.submit(self._fill, buffers[index], pairs, options, layout,
                                           resizer, cpu))]
            ring = Ring(buffers, submit)
            try:
                yield ring
            finally:
                ring.drain()

    def _fill(self, batch, pairs, options, layout, resizer, cpu) -> batches.Filled:
        laps, read = Laps(), {slot: _read(item) for slot, item in pairs}
        laps.lap("open")
        on_gpu = [slot for slot, (_, reason) in read.items() if reason is None]
        decoded = self._decode([read[slot][0] for slot in on_gpu], options)
        laps.lap("decode")
        reasons = {slot: read[slot][1] for slot in read if read[slot][1]}
        for slot, image in zip(on_gpu, decoded):
            if (why := _place(batch, slot, image, options, resizer)) is not None:
                reasons[slot] = why
        laps.lap("resize")
        errors = dict(cpu.map(lambda slot: _on_cpu(batch, slot, dict(pairs)[slot], options,
                                                   layout, resizer), reasons))
        self.tally.add(len(pairs) - len(reasons), collections.Counter(reasons.values()))
        laps.lap("write")
        return batches.Filled([errors.get(slot) for slot, _ in pairs], laps.times)

    def _decode(self, datas, options) -> list:
        if not datas:
            return []
        nv = self.module
        if self._decoder is None:
            self._decoder = self._open_decoder()
        params = nv.DecodeParams(apply_exif_orientation=options.exif,
                                 color_spec=nv.ColorSpec.SRGB, allow_any_depth=False)
        return self._decoder.decode(datas, params=params)

    def _open_decoder(self):
        nv = self.module
        kinds = (nv.BackendKind.GPU_ONLY, nv.BackendKind.HYBRID_CPU_GPU,
                 nv.BackendKind.HW_GPU_ONLY)
        try:
            return nv.Decoder(device_id=self.device_id, backends=[nv.Backend(k) for k in kinds],
                              options=DECODER_OPTIONS)
        except Exception as exc:  # nvImageCodec's own errors: no driver, no device
            raise DeviceError(f"nvImageCodec could not start a GPU decoder ({exc}); run "
                              f"`fexport doctor`, or use decode='processes'") from exc

    def close(self) -> None:
        """Nothing to end: the decoder's threads end with each run."""


def _read(item):
    """(the file's bytes, None) for a file the GPU decoder takes, else (None, why not)."""
    if not isinstance(item, (str, bytes, Path)):
        return None, f"a {type(item).__name__}, not a file"
    try:
        data = item if isinstance(item, bytes) else Path(item).read_bytes()
    except OSError:
        return None, "unreadable here (the CPU loader says why)"
    reason = formats.cpu_reason(data[:formats.HEADER_BYTES])
    return (data, None) if reason is None else (None, reason)


def _place(batch, slot, image, options, resizer) -> str | None:
    """A decoded device image resized into `slot`; or why it goes to the CPU instead."""
    if image is None:
        return "nvImageCodec could not decode it"
    cai = image.__cuda_array_interface__
    height, width, channels = cai["shape"]
    if cai.get("strides") or channels != 3 or cai["typestr"] != "|u1":
        return "decoded as other than packed 8-bit RGB"
    _synchronize(cai.get("stream"))  # the decode is on nvImageCodec's stream, the gather not
    rows, columns = formats.resize_indices((width, height), options)
    resizer.write(batch, slot, (cai["data"][0], cai["shape"]), rows, columns)
    return None


def _on_cpu(batch, slot, item, options, layout, resizer):
    """(slot, None or the ImageError): the CPU loader's pixels, copied into the device slot."""
    pixels = np.empty(layout.shape, layout.dtype)
    filled = batches.fill(pixels[None], [(0, item)], options, layout.layout)
    if filled.errors[0] is None:
        resizer.upload(batch, slot, pixels)
    return slot, filled.errors[0]


@functools.lru_cache(maxsize=1)
def _cudart():
    return ctypes.CDLL(CUDA_RUNTIME)


def _synchronize(stream) -> None:
    if _cudart().cudaStreamSynchronize(ctypes.c_void_p(stream or 0)) != 0:
        raise DeviceError("the GPU decoder's CUDA stream failed to synchronize; run "
                          "`fexport doctor`, or use decode='processes'")
