"""A ring of batch buffers that consecutive batches are decoded into, ahead of the engine, and
the batch being decoded: shared by every decoder (runtime/decoding.py, runtime/gpu_decode.py).
"""

from __future__ import annotations

import collections
import itertools
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from fexport.errors import FexportError

from .files import images
from .stages import DecodeTimes


class PendingBatch:
    """One batch being decoded into `pixels`; `settle` waits for it, and then `times` holds
    the seconds its decoders spent on each stage."""

    def __init__(self, keys: list[str], pixels: np.ndarray, parts: list):
        self.keys, self.pixels, self._parts = keys, pixels, parts  # parts: (pairs, future)
        self.times = DecodeTimes()

    def settle(self) -> list:
        """None, or the ImageError saying why not, per image. Any other error (the decoding
        processes stopped) is not an image's and stops the run."""
        errors = [None] * len(self.keys)
        for pairs, future in self._parts:
            filled = _result(future)
            self.times.add(filled.times)
            for (slot, _), error in zip(pairs, filled.errors):
                errors[slot] = error
        return errors


class Ring:
    """`buffers` used in turn by consecutive batches; `submit(index, pairs, options)` sends
    (slot, item) pairs to be decoded into buffer `index`, and gives (pairs, future) parts."""

    def __init__(self, buffers: list, submit):
        self.buffers, self._submit, self._futures = buffers, submit, []

    def ahead(self, items, size: int, options) -> PendingBatch:
        """A PendingBatch per `size` items, in order, the next len(buffers) - 1 decoding while
        the caller has one. A buffer is filled again only after the caller asked for the next."""
        pending, items = collections.deque(), iter(items)
        for index in itertools.count():
            if not (group := list(itertools.islice(items, size))):
                break
            pending.append(self._decode(index % len(self.buffers), group, options))
            if len(pending) == len(self.buffers):
                yield pending.popleft()
        yield from pending

    def _decode(self, index, group, options) -> PendingBatch:
        parts = self._submit(index, list(enumerate(group)), options)
        self._futures = [f for f in self._futures if not f.done()] + [f for _, f in parts]
        return PendingBatch(list(map(images.describe, group)), self.buffers[index][:len(group)],
                            parts)

    def drain(self) -> None:
        """Wait for what is still decoding, so that nothing writes into the buffers after."""
        for future in self._futures:
            future.cancel()
        wait(self._futures)


def thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="fexport-decode")


def _result(future) -> list:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise FexportError(
            f"the image-decoding processes stopped ({exc}). Spawned processes import the "
            "main module, so a script read from standard input cannot start them: run it "
            "from a file, or use decode='threads'.") from exc
