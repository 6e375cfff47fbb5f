"""Dynamic batching: requests' images gathered into batches, their rows sent back to each one.

One bounded queue per model, counted in images. An image is counted from the moment its request
is admitted (before decoding) until its features are computed, so the limit bounds the memory of
decoding too. A batch runs when `max_batch_size` images are waiting, or when the oldest has
waited `max_delay`, or at once when no other admitted image is on its way (still decoding): a
lone request then never waits for a batch that nothing could join (measured with one client on
ResNet-8 on 2 cores: waiting out 5 ms gave 107 images/s, not waiting 264). A request larger
than a batch is split across batches; every request gets exactly its own rows, in order.
Batches run one at a time in the model's own thread: the engine already uses every core for one
batch, and meanwhile the event loop accepts and decodes the next.

A request that waits past its deadline is dropped from the queue (its rows not yet taken are
never computed) and answered 504 by the caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from fexport.errors import DeadlineError, PayloadTooLargeError, QueueFullError


@dataclass(eq=False)
class _Job:
    """One request's pixels, the rows computed so far, and the future its caller awaits."""

    pixels: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)
    out: np.ndarray | None = None
    taken: int = 0  # rows handed to a batch
    done: int = 0  # rows computed
    cancelled: bool = False

    @property
    def size(self) -> int:
        return len(self.pixels)


class Batcher:
    """Runs `run(pixels) -> features` on batches of waiting requests, in `executor`."""

    def __init__(self, run, executor, *, max_batch_size, max_delay, max_queue, observer):
        self._run, self._executor, self._observer = run, executor, observer
        self.max_batch_size, self.max_delay, self.max_queue = max_batch_size, max_delay, \
            max_queue
        self.admitted = 0  # images admitted and not yet computed (or given up)
        self._queue: collections.deque[_Job] = collections.deque()
        self._waiting = 0  # rows in the queue not yet taken
        self._submitted = 0  # images of submitted requests not yet answered
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    @contextlib.contextmanager
    def admit(self, images: int):
        """Count `images` against the queue for the body of the `with`; refuse when full."""
        if images > self.max_queue:
            raise PayloadTooLargeError(
                f"the request holds {images} images; this server queues at most "
                f"{self.max_queue} at once: send at most {self.max_queue} per request")
        if self.admitted + images > self.max_queue:
            raise QueueFullError(f"the queue holds {self.admitted} of its {self.max_queue} "
                                 f"images, no room for {images} more: retry shortly")
        self.admitted += images
        self._observer.queue_depth(self.admitted)
        try:
            yield
        finally:
            self.admitted -= images
            self._observer.queue_depth(self.admitted)

    async def submit(self, pixels: np.ndarray, deadline: float) -> np.ndarray:
        """The features of `pixels` ((n, H, W, C) float32), row i for image i; DeadlineError
        when they are not computed by `deadline` (a time.perf_counter() value)."""
        if deadline <= time.perf_counter():  # spent decoding: queue nothing for it
            raise _past_deadline(len(pixels))
        job = _Job(pixels, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._waiting += job.size
        self._submitted += job.size
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future),
                                          max(0.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            job.cancelled = True
            raise _past_deadline(job.size) from None
        except asyncio.CancelledError:  # the client went away: compute nothing more for it
            job.cancelled = True
            raise
        finally:
            self._submitted -= job.size

    async def stop(self) -> None:
        """Finish every queued request, then stop."""
        while self._queue and self._task and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await self._wait_for_work()
            await self._wait_to_fill()
            parts = self._take()
            if parts:
                await self._compute(parts)

    async def _wait_for_work(self) -> None:
        while not self._live_head():
            self._arrived.clear()
            await self._arrived.wait()

    def _live_head(self) -> _Job | None:
        """The oldest queued job still wanted, dropping the cancelled ones before it."""
        while self._queue and self._queue[0].cancelled:
            job = self._queue.popleft()
            self._waiting -= job.size - job.taken
        return self._queue[0] if self._queue else None

    async def _wait_to_fill(self) -> None:
        """Until a full batch waits, the oldest job has waited max_delay, or no admitted image
        is still on its way to the queue."""
        head = self._live_head()
        until = head.arrived + self.max_delay if head else 0.0
        while self._waiting < self.max_batch_size and self.admitted > self._submitted:
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[tuple[_Job, int, int]]:
        """Up to max_batch_size rows from the head of the queue: (job, start, stop) each."""
        parts, rows = [], 0
        while rows < self.max_batch_size and (job := self._live_head()):
            count = min(job.size - job.taken, self.max_batch_size - rows)
            if job.taken == 0:
                self._observer.queued(time.perf_counter() - job.arrived)
            parts.append((job, job.taken, job.taken + count))
            job.taken += count
            rows += count
            self._waiting -= count
            if job.taken == job.size:
                self._queue.popleft()
        return parts

    async def _compute(self, parts) -> None:
        pixels = _gather(parts)
        started = time.perf_counter()
        try:
            features = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, pixels)
        except Exception as exc:  # the engine failed: every request in the batch is told
            for job, _, _ in parts:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._observer.batch(len(pixels), time.perf_counter() - started)
        _scatter(parts, features)


def _past_deadline(images: int) -> DeadlineError:
    return DeadlineError(f"the request's {images} images were not computed by its deadline; "
                         "the server is overloaded: retry later, or send fewer images at once")


def _gather(parts) -> np.ndarray:
    """One batch of the parts' pixels; a view, with no copy, when one part is the batch."""
    if len(parts) == 1:
        job, start, stop = parts[0]
        return job.pixels[start:stop]
    return np.concatenate([job.pixels[start:stop] for job, start, stop in parts])


def _scatter(parts, features: np.ndarray) -> None:
    """Each part's rows into its job's output; a job whose rows are all in is answered."""
    offset = 0
    for job, start, stop in parts:
        if job.out is None:
            job.out = np.empty((job.size, *features.shape[1:]), features.dtype)
        job.out[start:stop] = features[offset:offset + stop - start]
        offset += stop - start
        job.done += stop - start
        if job.done == job.size and not job.future.done():
            job.future.set_result(job.out)
