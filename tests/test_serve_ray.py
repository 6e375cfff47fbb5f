"""`fexport serve --engine ray`: the same endpoints as a Ray Serve deployment of two replicas on
a local Ray cluster (started by the server process, on this machine), batching past Ray Serve's
default cap of 5 ongoing requests, and SIGTERM taking it down with exit status 0."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image

from fexport.comparison import max_rel
from fexport.runtime import FeatureExtractor
from serving import Server, get, post_json

pytest.importorskip("ray.serve")

TINY = Path(__file__).parent / "data" / "tiny_features.onnx"  # (N, 16, 16, 3) -> (N, 4)
# One engine, one file in every replica: only the batches differ (see test_serve.py).
SAME_ENGINE_RTOL = 1e-6


def _jpeg(seed) -> bytes:
    """A 2400x1800 photo-sized JPEG: tens of milliseconds to decode, so a replica's concurrent
    requests are still decoding when its batch forms, and wait for each other."""
    ramp = np.linspace(0, 255, 2400, dtype=np.float32)
    shade = np.random.default_rng(seed).integers(0, 64, (1800, 1, 3))
    buffer = io.BytesIO()
    Image.fromarray((ramp[None, :, None] * 0.75 + shade).astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_ray_serve_replicas_answer_like_the_local_server():
    server = Server(TINY, "--engine", "ray", "--replicas", "2", "--max-delay-ms", "200",
                    "--max-batch-size", "64", ready_line="on Ray Serve")
    try:
        files = [_jpeg(seed) for seed in range(32)]
        expected = FeatureExtractor(TINY).extract(files)
        client = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_server_ready() and client.is_model_ready("tiny_features")
        tensor = triton_http.InferInput("images", [4], "BYTES")
        tensor.set_data_from_numpy(np.array(files[:4], dtype=object))
        rows = client.infer("tiny_features", [tensor]).as_numpy("features")
        assert max_rel(expected[:4], rows) <= SAME_ENGINE_RTOL

        def one(i):
            status, answer, _ = post_json(server.url + "/v2/models/tiny_features/infer", {
                "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(files[i]).decode()]}]})
            assert status == 200, answer
            return max_rel(expected[i:i + 1], np.asarray(answer["outputs"][0]["data"],
                                                         np.float32)[None])

        with ThreadPoolExecutor(32) as pool:
            assert max(pool.map(one, range(32))) <= SAME_ENGINE_RTOL
        # Each /metrics answer is one replica's page: 12 reads see both replicas but for bad luck.
        pages = {get(server.url + "/metrics")[1].decode() for _ in range(12)}
        assert all(_series(text, "fexport_batch_size_sum") / _series(
            text, "fexport_batch_size_count") > 1 for text in pages)
        # Some batch held more than 8 images: more than Ray Serve's default cap of 5 requests.
        assert any(_series(text, 'fexport_batch_size_bucket{le="8.0"') <
                   _series(text, "fexport_batch_size_count") for text in pages)
        assert server.terminate(timeout=90) == 0
    finally:
        server.stop()


def _series(text: str, prefix: str) -> float:
    """The value of the one series on the metrics page whose line starts with `prefix`."""
    (value,) = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(prefix) and not line.startswith("#")]
    return value
