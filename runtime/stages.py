"""Where a run's time goes: waiting for decoded images, the engine, writing, and the rest.

Decoding runs ahead in worker threads or processes, so the main thread's wait for the next
batch's images is the decoding it could not hide behind the engine; the decoders time each
image's own stages (open, decode, resize, write into the batch) and send the sums back with
the batch. Timed with a few time.perf_counter() calls a batch and an image, so every local run
carries it (`Summary.stages`) and `fexport extract --profile` prints it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

STAGES = ("decode_wait", "engine", "write")
DECODE_STAGES = ("open", "decode", "resize", "write")


@dataclasses.dataclass
class DecodeTimes:
    """Seconds the decoders spent on each stage of an image, summed over all of them: they run
    at once, beside the main thread, so the sum may exceed the run's wall clock. Each is a
    decoder's wall clock, so with more decoders than cores it includes waiting for a core."""

    open: float = 0.0  # opening the file and reading the format's header
    decode: float = 0.0  # reading and decompressing the pixels
    resize: float = 0.0  # colour conversion and resizing
    write: float = 0.0  # into the batch, in the model's layout and dtype

    def add(self, other: DecodeTimes) -> None:
        for stage in DECODE_STAGES:
            setattr(self, stage, getattr(self, stage) + getattr(other, stage))

    def line(self) -> str:
        return "  decoders, summed: " + ", ".join(
            f"{label} {getattr(self, stage):.2f} s" for stage, label in zip(
                DECODE_STAGES, ("opening", "decoding", "resizing", "into the batch")))


class Laps:
    """Times the stages of one image after another: `lap(stage)` adds the time since the last
    lap, or since `start`, to that stage of `times`."""

    def __init__(self):
        self.times, self._last = DecodeTimes(), time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        setattr(self.times, stage, getattr(self.times, stage) + now - self._last)
        self._last = now


@dataclasses.dataclass
class StageTimes:
    """Seconds of the main thread in each stage of one run, and the images it extracted."""

    images: int = 0
    decode_wait: float = 0.0  # waiting for the next batch's decoded images
    engine: float = 0.0  # the engine on those batches, input conversion included
    write: float = 0.0  # committing batches and assembling the output
    total: float = 0.0  # the whole run, wall clock
    decoders: DecodeTimes = dataclasses.field(default_factory=DecodeTimes)

    @property
    def other(self) -> float:
        return max(0.0, self.total - sum(getattr(self, stage) for stage in STAGES))

    def images_per_s(self, seconds: float) -> float:
        return self.images / seconds if seconds > 0 else 0.0

    def lines(self) -> list[str]:
        end_to_end, engine = self.images_per_s(self.total), self.images_per_s(self.engine)
        ratio = end_to_end / engine if engine else 0.0
        shares = ", ".join(f"{label} {seconds:.2f} s ({self._share(seconds)})" for label, seconds
                           in (("waiting for decoding", self.decode_wait),
                               ("engine", self.engine), ("writing", self.write),
                               ("other", self.other)))
        return [f"end to end {end_to_end:.1f} images/s; the engine alone {engine:.1f} images/s "
                f"on the same batches ({ratio:.2f}x of it)", f"  {self.total:.2f} s: {shares}",
                self.decoders.line()]

    def _share(self, seconds: float) -> str:
        return f"{seconds / self.total:.0%}" if self.total > 0 else "-"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "other": self.other}


@contextlib.contextmanager
def timing(stages: StageTimes | None, stage: str):
    """Add the body's seconds to `stages`' `stage`; nothing when `stages` is None."""
    if stages is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        setattr(stages, stage, getattr(stages, stage) + time.perf_counter() - started)
