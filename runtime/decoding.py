"""Decoding images ahead of inference, in threads (the default) or in processes, straight into
the batch the engine reads (fexport.runtime.batches).

Threads share one interpreter. Pillow and numpy release the GIL while they decode and resize,
but every image takes it back several times, and on a 16-core GPU host 16 threads decoded
hardly faster than 4: on an H200's machine, 375 images/s on one thread, 1218 on 4, 1313 on 16,
while the GPU ran 5506. Processes have a GIL each. Files and bytes go to the processes, which
write the pixels into the batch in shared memory: only the inputs and one error or None per
image cross the pipe, never pixels. Arrays and PIL images are already in this process and load
here.

A run holds `depth` batch buffers, a ring: the engine runs on one while the next ones decode.
The process pool starts on first use and then stays, shared by every thread that uses the
extractor, and so do the shared-memory rings, lent to one run at a time. Processes are started
by spawning, never by forking a process whose inference engine already runs threads. They end
with their parent, even when it is killed: then Python's resource tracker, which outlives them,
unlinks the shared memory, so a SIGKILL leaves nothing in /dev/shm.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import connection, shared_memory

from fexport.errors import UsageError

from . import batches
from .files import images
from .rings import Ring, thread_pool

DECODERS = ("threads", "processes", "gpu")  # gpu: runtime/gpu_decode.py, the gpu-decode extra
# Files per task, so the pool's queues are crossed once per 8 images rather than per image. On
# 2 cores the parent's share of the work still keeps processes below threads when decoding alone
# (about 950 against 1500 images/s); on a 16-core H100 host, extraction from JPEG files went
# from 822 images/s in threads to 1106 in processes.
CHUNK = 8
SEGMENT_PREFIX = "fexport-"  # the shared memory's names in /dev/shm: fexport-<pid>-<n>


def check_decoder(decode) -> None:
    if decode not in DECODERS:
        raise UsageError(f"decode {decode!r}: expected one of {', '.join(DECODERS)}")


def decoder(decode: str, workers: int):
    check_decoder(decode)
    if decode == "gpu":
        from .gpu_decode import GpuDecoder

        return GpuDecoder(workers)
    return ProcessDecoder(workers) if decode == "processes" else ThreadDecoder(workers)


def depth(batch_size: int, workers: int) -> int:
    """Batches in a ring: the one at the engine, the next one, and enough more that every
    worker has an image to decode."""
    return 2 + -(-workers // batch_size)


class ThreadDecoder:
    """Decoding in `workers` threads of this process, into numpy buffers; one image a task."""

    def __init__(self, workers: int):
        self.workers = workers

    @contextlib.contextmanager
    def ring(self, layout: batches.BatchLayout, size: int, count: int):
        buffers = [layout.empty(size) for _ in range(count)]
        with thread_pool(self.workers) as pool:
            def submit(index, pairs, options):
                return [([pair], pool.submit(batches.fill, buffers[index], [pair], options,
                                             layout.layout)) for pair in pairs]
            ring = Ring(buffers, submit)
            try:
                yield ring
            finally:
                ring.drain()

    def close(self) -> None:
        """Nothing to end: a run's threads end with it."""


class ProcessDecoder:
    """A pool of `workers` processes that decode files and bytes, CHUNK to a task, into
    shared-memory rings; everything else decodes here."""

    def __init__(self, workers: int):
        self.workers, self._pool, self._lock = workers, None, threading.Lock()
        self._free: list[shared_memory.SharedMemory] = []  # rings no run holds now
        self._made: list[shared_memory.SharedMemory] = []
        weakref.finalize(self, _unlink, self._made)

    @contextlib.contextmanager
    def ring(self, layout: batches.BatchLayout, size: int, count: int):
        memory = self._lease(count * layout.nbytes(size))
        buffers = [layout.view(memory.buf, size, i * layout.nbytes(size)) for i in range(count)]
        ring = Ring(buffers, lambda index, pairs, options: self._submit(
            memory.name, layout, size, buffers[index], index, pairs, options))
        try:
            yield ring
        finally:
            ring.drain()
            with self._lock:
                self._free.append(memory)

    def _submit(self, name, layout, size, buffer, index, pairs, options) -> list:
        files = [pair for pair in pairs if _is_file(pair[1])]
        here = [pair for pair in pairs if not _is_file(pair[1])]
        parts = [(here, _done(batches.fill, buffer, here, options, layout.layout))] if here \
            else []
        offset = index * layout.nbytes(size)
        for start in range(0, len(files), CHUNK):
            chunk = files[start:start + CHUNK]
            parts.append((chunk, self._executor().submit(
                fill_shared, name, layout, size, offset, chunk, options)))
        return parts

    def _lease(self, nbytes: int) -> shared_memory.SharedMemory:
        with self._lock:
            for memory in self._free:
                if memory.size >= nbytes:
                    self._free.remove(memory)
                    return memory
            name = f"{SEGMENT_PREFIX}{os.getpid()}-{len(self._made)}-{id(self):x}"
            self._made.append(shared_memory.SharedMemory(name, create=True, size=max(1, nbytes)))
            return self._made[-1]

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_parent)
            return self._pool

    def close(self) -> None:
        """End the processes and unlink the shared memory (they start again when needed)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
            _unlink(self._made)
            self._free.clear()


# In a decoding process: the shared memory it has opened, by name, kept until it exits.
_attached: dict[str, shared_memory.SharedMemory] = {}


def fill_shared(name, layout, size, offset, pairs, options) -> batches.Filled:
    """In a decoding process: decode `pairs` into the batch at `offset` of shared memory
    `name`."""
    if name not in _attached:
        _attached[name] = shared_memory.SharedMemory(name)
    batch = layout.view(_attached[name].buf, size, offset)
    return batches.fill(batch, pairs, options, layout.layout)


def _exit_with_parent() -> None:
    """A decoding process's first step: a thread that ends the process when its parent is
    gone, killed or not, instead of waiting for work forever as an orphan."""
    parent = multiprocessing.parent_process()

    def watch():
        connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="fexport-parent-watch").start()


def _unlink(made: list) -> None:
    while made:
        memory = made.pop()
        with contextlib.suppress(BufferError):  # a caller still holds a batch: unmapped later
            memory.close()
        with contextlib.suppress(FileNotFoundError):
            memory.unlink()


def _is_file(item) -> bool:
    return isinstance(item, (str, bytes)) or hasattr(item, "__fspath__")


def _done(function, *args) -> Future:
    future = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:  # settled by the caller, as a thread's error would be
        future.set_exception(exc)
    return future


def decode_all(decoder, items, options: images.LoadOptions, layout, size: int = 32) -> int:
    """Decode every item as a run does, into a ring, and drop the pixels: the images that
    loaded. Decoding alone, for the benchmarks."""
    loaded = 0
    with decoder.ring(layout, size, depth(size, decoder.workers)) as ring:
        for pending in ring.ahead(items, size, options):
            loaded += sum(error is None for error in pending.settle())
    return loaded
