"""The dynamic batcher on its own: rows back to their own requests, batch sizes bounded, the
queue bounded in images, deadlines, and an engine failure kept to its batch. The "engine" is a
numpy function of the pixels, so every row says which image it came from."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fexport.errors import DeadlineError, PayloadTooLargeError, QueueFullError
from fexport.serve.batcher import Batcher


class Record:
    """The batcher's observer: what it reported."""

    def __init__(self):
        self.sizes, self.depths, self.waits = [], [], []

    def batch(self, size, seconds):
        self.sizes.append(size)

    def queue_depth(self, images):
        self.depths.append(images)

    def queued(self, seconds):
        self.waits.append(seconds)


def features(pixels):
    """Row i: the image's first pixel and its mean, a function of that image alone."""
    return np.stack([pixels[:, 0, 0, 0], pixels.mean(axis=(1, 2, 3))], axis=1)


def images(first, count):
    values = np.arange(first, first + count, dtype=np.float32)
    return np.broadcast_to(values[:, None, None, None], (count, 2, 2, 1)).copy()


async def _serve(sizes, run=features, **limits):
    record, executor = Record(), ThreadPoolExecutor(1)
    settings = dict(max_batch_size=4, max_delay=0.002, max_queue=1000) | limits
    batcher = Batcher(run, executor, observer=record, **settings)
    batcher.start()
    starts = np.cumsum([0, *sizes])

    async def one(first, size):
        with batcher.admit(size):
            return await batcher.submit(images(first, size), time.perf_counter() + 10)

    results = await asyncio.gather(*(one(s, n) for s, n in zip(starts, sizes)),
                                   return_exceptions=True)
    await batcher.stop()
    executor.shutdown()
    return results, record


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_every_request_gets_exactly_its_own_rows(sizes):
    results, record = asyncio.run(_serve(sizes))
    first = 0
    for size, rows in zip(sizes, results):
        assert np.array_equal(rows, features(images(first, size)))
        first += size
    assert sum(record.sizes) == sum(sizes) and max(record.sizes) <= 4
    assert record.depths[-1] == 0  # every admitted image was released


def test_concurrent_requests_share_batches():
    _, record = asyncio.run(_serve([1] * 16, max_batch_size=8, max_delay=0.05))
    assert len(record.sizes) < 16 and max(record.sizes) == 8


def test_a_lone_request_does_not_wait_for_a_batch_nothing_can_join():
    async def scenario():
        batcher = Batcher(features, ThreadPoolExecutor(1), max_batch_size=8, max_delay=5,
                          max_queue=100, observer=Record())
        batcher.start()
        started = time.perf_counter()
        with batcher.admit(1):
            await batcher.submit(images(0, 1), started + 10)
        await batcher.stop()
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 1  # not the 5 s max_delay


def test_a_full_queue_refuses_and_a_request_over_the_queue_is_too_large():
    async def scenario():
        batcher = Batcher(features, ThreadPoolExecutor(1), max_batch_size=4, max_delay=0,
                          max_queue=5, observer=Record())
        with batcher.admit(4):
            with pytest.raises(QueueFullError, match="4 of its 5 images"):
                with batcher.admit(2):
                    pass
            with batcher.admit(1):  # exactly full is allowed
                assert batcher.admitted == 5
        assert batcher.admitted == 0
        with pytest.raises(PayloadTooLargeError, match="at most 5"):
            with batcher.admit(6):
                pass

    asyncio.run(scenario())


def test_a_request_past_its_deadline_is_not_computed():
    async def scenario():
        record = Record()
        batcher = Batcher(features, ThreadPoolExecutor(1), max_batch_size=8, max_delay=0.3,
                          max_queue=100, observer=record)
        batcher.start()
        with batcher.admit(3):  # one admitted image is still on its way: the batch waits
            with pytest.raises(DeadlineError, match="deadline"):
                await batcher.submit(images(0, 2), time.perf_counter() + 0.02)
        rows = await batcher.submit(images(5, 1), time.perf_counter() + 5)
        await batcher.stop()
        return rows, record

    rows, record = asyncio.run(scenario())
    assert np.array_equal(rows, features(images(5, 1)))
    assert record.sizes == [1]  # the abandoned request's 2 images never ran


def test_an_engine_failure_fails_its_own_batch_only():
    def fragile(pixels):  # fails on the second request's image (value 1)
        if (pixels == 1).any():
            raise RuntimeError("engine fault")
        return features(pixels)

    results, _ = asyncio.run(_serve([1, 1, 1], run=fragile, max_batch_size=1))
    assert isinstance(results[1], RuntimeError)
    assert np.array_equal(results[0], features(images(0, 1)))
    assert np.array_equal(results[2], features(images(2, 1)))
