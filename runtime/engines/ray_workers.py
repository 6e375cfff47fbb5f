"""What runs on the Ray workers of `--engine ray`: the actor that keeps one FeatureExtractor for
every batch it is given, and the Arrow rows it hands back.

Actors load images with the local engine's loader (`images.load` with the extractor's
LoadOptions) and run `FeatureExtractor.predict`: ONNX Runtime on the CPU gives an image the same
numbers whatever batch it is in, so the features are the local engine's, bit for bit.
"""

from __future__ import annotations

import os
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fexport.errors import FexportError, ImageError

from ..extractor import FeatureExtractor
from ..files import images, remote, sinks

_loads = 0  # models opened in this process: one per actor process when the pool works as meant


def open_extractor(data: bytes, options) -> FeatureExtractor:
    """A FeatureExtractor on a model given as bytes; onnxruntime reads the file whole, so the
    temporary copy is deleted as soon as the session is open."""
    with tempfile.TemporaryDirectory(prefix="fexport-model-") as folder:
        path = os.path.join(folder, "model.onnx")
        Path(path).write_bytes(data)
        extractor = FeatureExtractor(path, **options)
    global _loads
    _loads += 1
    return extractor


class Extractor:
    """One actor of the pool: the model opened once, then every batch it is handed."""

    def __init__(self, model, options):
        import ray

        # The reference is wrapped in a list so that Ray hands it over unresolved: the bytes
        # are fetched here, once, and dropped once the session is open.
        self.error = None
        try:
            self.extractor = open_extractor(ray.get(model[0]), options)
        except FexportError as exc:
            # An actor that dies in its constructor reaches the driver as text, and Ray
            # restarts it forever; raised from the first call, the error arrives as itself.
            self.error = exc
            return
        self.worker = f"{socket.gethostname()}:{os.getpid()}/{self.extractor.device}"
        # Whether Ray started this process again for an actor whose process died: the driver
        # counts the restarts (ray_resume.Tally.restarts).
        context = ray.get_runtime_context()
        self.placement = (bool(context.was_current_actor_reconstructed), context.get_node_id())
        self.pool = ThreadPoolExecutor(self.extractor.workers, thread_name_prefix="fexport-load")

    def __call__(self, batch):
        if self.error:
            raise self.error
        _kill_for_tests(batch)
        keys = [str(key) for key in batch["path"]]
        sources = _sources(batch, keys)
        loaded = list(self.pool.map(self._load, keys, sources))
        good = [i for i, (array, _) in enumerate(loaded) if array is not None]
        features = self.extractor.predict([loaded[i][0] for i in good]) if good else \
            np.zeros((0, self.extractor.feature_dim), np.float32)
        errors = [error for _, error in loaded]
        rows = features.reshape(len(features), int(np.prod(features.shape[1:])))
        return _table(batch, keys, good, rows, errors, (self.worker, _loads, *self.placement))

    def _load(self, key, source):
        """(pixels, None), or (None, the one-line reason, naming the input by its key)."""
        try:
            if remote.is_uri(source):
                source = remote.read_bytes(source)
            return images.load(source, self.extractor.load_options), None
        except ImageError as exc:
            return None, _named(str(exc), source, key)


def _kill_for_tests(batch) -> None:
    """Test hook: FEXPORT_TEST_KILL_WORKER_AT=INDEX:FILE makes the first worker given input
    INDEX create FILE and SIGKILL itself, a worker dying mid-run as the OOM killer would do it.
    Unset, it costs one environment lookup per batch."""
    hook = os.environ.get("FEXPORT_TEST_KILL_WORKER_AT")
    if not hook or "index" not in batch:
        return
    index, marker = hook.split(":", 1)
    if int(index) in set(int(i) for i in batch["index"]):
        try:
            with open(marker, "x"):  # only the first worker there dies
                pass
        except FileExistsError:
            return
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _sources(batch, keys) -> list:
    """What to load for each row: the image when the row carries it, else its file."""
    for column in ("bytes", "image"):
        if column in batch:
            return list(batch[column])
    return [os.fsdecode(name) for name in batch["file"]] if "file" in batch else keys


def _named(reason, source, key) -> str:
    """The loader names bytes "<bytes>" and arrays by shape: name them by their row's key."""
    anonymous = images.describe(source)
    return key + reason[len(anonymous):] if reason.startswith(anonymous + ":") else reason


def _table(batch, keys, good, features, errors, worker):
    """The batch as Arrow: features as list<float32> (the local Parquet schema), null where the
    input failed, and the worker that made the rows."""
    import pyarrow as pa

    counts = np.zeros(len(keys), np.int64)
    counts[good] = features.shape[1]
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    values = pa.array(np.ascontiguousarray(features, "<f4").reshape(-1), pa.float32())
    failed = pa.array([error is not None for error in errors])
    columns = {"path": pa.array(keys, pa.string()),
               "features": pa.ListArray.from_arrays(offsets, values, mask=failed),
               "error": pa.array([error and sinks.utf8(error) for error in errors],
                                 pa.string()),
               "worker": pa.array([worker[0]] * len(keys), pa.string()),
               "loads": pa.array([worker[1]] * len(keys), pa.int64()),
               "restarted": pa.array([worker[2]] * len(keys), pa.bool_()),
               "node": pa.array([worker[3]] * len(keys), pa.string())}
    if "index" in batch:  # a run of extract_to_file: the listing's columns (files/listing.py)
        columns["index"] = pa.array(batch["index"], pa.int64())
        columns["file"] = pa.array(list(batch["file"]), pa.binary())
    return pa.table(columns)
