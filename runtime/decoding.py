"""Decoding images ahead of inference: in threads (the default) or in processes.

Threads share one interpreter. Pillow and numpy release the GIL while they decode and resize,
but every image takes it back several times, and on a 16-core GPU host 16 threads decoded
hardly faster than 4: on an H200's machine, 375 images/s on one thread, 1218 on 4, 1313 on 16,
while the GPU ran 5506. Processes have a GIL each. Files and bytes go to the processes, and
come back as the image's own pixels (uint8 for a JPEG, a quarter of float32's bytes through the
pipe), made float32 here. Arrays and PIL images are already in this process and load here.

The process pool starts on first use and then stays, shared by every thread that uses the
extractor. Processes are started by spawning, never by forking a process whose inference engine
already runs threads.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from fexport.errors import FexportError, ImageError, UsageError

from .files import images

DECODERS = ("threads", "processes")


def check_decoder(decode) -> None:
    if decode not in DECODERS:
        raise UsageError(f"decode {decode!r}: expected one of {', '.join(DECODERS)}")


# Files per task, so the pool's queues are crossed once per 8 images rather than per image. On
# 2 cores the parent's share of the work still keeps processes below threads when decoding alone
# (about 950 against 1500 images/s); on a 16-core H100 host, extraction from JPEG files went
# from 822 images/s in threads to 1106 in processes.
CHUNK = 8


class ProcessDecoder:
    """A pool of `workers` processes that load files and bytes, CHUNK to a task; everything
    else loads here. `submit` takes a group of inputs and gives one future per input."""

    def __init__(self, workers: int):
        self.workers, self._pool, self._lock = workers, None, threading.Lock()

    def submit(self, items: list, options: images.LoadOptions) -> list:
        files = [i for i, item in enumerate(items) if _is_file(item)]
        task = self._executor().submit(load_many, [items[i] for i in files], options) \
            if files else None
        part = {index: _Part(task, n) for n, index in enumerate(files)}
        return [part.get(i) or _done(item, options) for i, item in enumerate(items)]

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None


def load_many(items: list, options: images.LoadOptions) -> list:
    """In a decoding process: (pixels, None) or (None, ImageError) per input."""
    loaded = []
    for item in items:
        try:
            loaded.append((images.load_native(item, options), None))
        except ImageError as exc:
            loaded.append((None, exc))
    return loaded


def thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="fexport-decode")


def _is_file(item) -> bool:
    return isinstance(item, (str, bytes)) or hasattr(item, "__fspath__")


def _done(item, options) -> Future:
    future = Future()
    try:
        future.set_result(images.load(item, options))
    except Exception as exc:  # settled by the caller, as a thread's error would be
        future.set_exception(exc)
    return future


class _Part:
    """One input's share of a process's task, made float32 when it is taken."""

    def __init__(self, task: Future, index: int):
        self.task, self.index = task, index

    def result(self) -> np.ndarray:
        try:
            pixels, error = self.task.result()[self.index]
        except BrokenProcessPool as exc:
            raise FexportError(
                f"the image-decoding processes stopped ({exc}). Spawned processes import the "
                "main module, so a script read from standard input cannot start them: run it "
                "from a file, or use decode='threads'.") from exc
        if error is not None:
            raise error
        return pixels.astype(np.float32)
