"""The server under bad inputs, overload, deadlines and SIGTERM: each case gets its own JSON
answer, the server goes on serving, and a concurrent good client keeps getting correct rows.
Servers listen on 127.0.0.1; every loop is bounded in count and time."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fexport.comparison import max_rel
from fexport.runtime import FeatureExtractor
from serving import Server, get, post_json, request

TINY = Path(__file__).parent / "data" / "tiny_features.onnx"  # (N, 16, 16, 3) -> (N, 4)
# One engine, one file: only the batches differ (see test_serve.py).
SAME_ENGINE_RTOL = 1e-6


def _encoded(pixels, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def _photo(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 48, 3)).astype(np.uint8)


def _large_jpeg(seed=0) -> bytes:
    """A 4000x3000 photo-sized JPEG (12 MP, under the pixel limit): tens of milliseconds to
    decode on any CPU, so requests of it stay admitted while they decode."""
    ramp = np.linspace(0, 255, 4000, dtype=np.float32)
    shade = np.random.default_rng(seed).integers(0, 64, (3000, 1, 3))
    pixels = (ramp[None, :, None] * 0.75 + shade).astype(np.uint8)
    return _encoded(pixels, "JPEG")


def _wait_for_queue(server, images, timeout=10):
    until = time.monotonic() + timeout
    while server.metric("fexport_queue_images") < images and time.monotonic() < until:
        time.sleep(0.005)
    assert server.metric("fexport_queue_images") == images


def _files_request(files) -> dict:
    return {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(files)],
                        "data": [base64.b64encode(f).decode() for f in files]}]}


def _bomb_png(width, height) -> bytes:
    """A PNG of width x height black pixels: a few kB on disk, width * height in memory."""
    return _encoded(np.zeros((height, width), np.uint8))


def _bad_requests(url) -> list:
    """(what, method args, status, words the message holds) for each bad request."""
    infer = url + "/v2/models/tiny_features/infer"
    jpeg = _encoded(_photo(), "JPEG")
    files = {"a truncated JPEG": (jpeg[:len(jpeg) // 2], "truncated"),
             "a zero-byte file": (b"", "empty"),
             "text named .jpg": (b"hello, this is not a picture", "not an image"),
             "a decompression-bomb PNG": (_bomb_png(8000, 8000), "over this server's limit")}
    cases = [(what, (infer, _files_request([data])), 400, words)
             for what, (data, words) in files.items()]
    pixel = {"name": "pixels", "datatype": "FP32", "shape": [1, 16, 16], "data": [0.0] * 256}
    int32 = {"name": "pixels", "datatype": "INT32", "shape": [1, 16, 16, 3], "data": [0] * 768}
    return cases + [
        ("a wrong tensor shape", (infer, {"inputs": [pixel]}), 400, "[-1, 16, 16, 3]"),
        ("a wrong datatype", (infer, {"inputs": [int32]}), 400, "expected BYTES"),
        ("an unknown model", (url + "/v2/models/nothing/infer", {"inputs": [pixel]}), 404,
         "tiny_features"),
        ("more images than the queue", (infer, _files_request([jpeg] * 20)), 413, "at most 16"),
    ]


def _raw_bad_requests(url) -> list:
    infer = url + "/v2/models/tiny_features/infer"
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    body = header + b"\x04\0\0\0abcd"
    return [("malformed JSON", infer, b'{"inputs": [', {}, 400, "not valid JSON"),
            ("a header length past the body", infer, body,
             {"Inference-Header-Content-Length": str(len(body) + 10)}, 400, "at most the body"),
            ("a header length inside the JSON", infer, body,
             {"Inference-Header-Content-Length": "7"}, 400, "not valid JSON")]


def _declared_body(url, length) -> tuple[int, bytes]:
    """A POST that declares an oversized body and sends none of it: the server answers from
    the Content-Length (sending the 2 MiB while the server closes on its 413 broke the pipe)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest("POST", parts.path)
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class GoodClient(threading.Thread):
    """Sends a good request over and over (at most 400 times, 60 s) until stopped."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stopped, self.results = url, threading.Event(), []
        self.files = [_encoded(_photo(seed)) for seed in range(3)]
        self.expected = FeatureExtractor(TINY).extract(self.files)

    def run(self):
        until = time.monotonic() + 60
        while not self.stopped.is_set() and len(self.results) < 400 \
                and time.monotonic() < until:
            status, answer, _ = post_json(self.url + "/v2/models/tiny_features/infer",
                                          _files_request(self.files))
            rows = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(3, 4) \
                if status == 200 else None
            self.results.append((status, rows))


def test_each_bad_input_gets_its_own_answer_while_a_good_client_is_served():
    with Server(TINY, "--max-queue", "16", "--max-body-mb", "1") as server:
        good = GoodClient(server.url)
        good.start()
        for what, (url, body), status, words in _bad_requests(server.url):
            code, answer, _ = post_json(url, body)
            assert (code, list(answer)) == (status, ["error"]), (what, answer)
            assert words in answer["error"], (what, answer["error"])
        for what, url, body, headers, status, words in _raw_bad_requests(server.url):
            code, answer, _ = request("POST", url, body, headers)
            assert code == status and words in json.loads(answer)["error"], (what, answer)
        code, answer = _declared_body(server.url + "/v2/models/tiny_features/infer", 2 * 2**20)
        assert code == 413 and "at most" in json.loads(answer)["error"], answer
        good.stopped.set()
        good.join(30)
        assert good.results and all(status == 200 for status, _ in good.results)
        assert max(max_rel(good.expected, rows) for _, rows in good.results) \
            <= SAME_ENGINE_RTOL
        assert get(server.url + "/v2/health/ready")[0] == 200


def test_a_full_queue_answers_429_at_once_and_recovers():
    # The first request's 8 large JPEGs fill the queue while 4 threads decode them.
    with Server(TINY, "--max-queue", "8") as server:
        url = server.url + "/v2/models/tiny_features/infer"
        large = [_large_jpeg(seed) for seed in range(8)]
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_json, url, _files_request(large))
            _wait_for_queue(server, 8)
            started = time.monotonic()
            status, answer, headers = post_json(url, _files_request(large[:1]), timeout=10)
            assert status == 429 and "retry" in answer["error"]
            assert time.monotonic() - started < 0.5  # refused, not queued
            assert int(headers["retry-after"]) >= 1
            assert first.result(timeout=60)[0] == 200
        assert post_json(url, _files_request(large[:1]))[0] == 200


def test_a_request_past_its_deadline_gets_504_and_is_not_computed():
    # Decoding a 12 MP JPEG takes longer than the 5 ms deadline, which counts from admission.
    with Server(TINY, "--request-timeout", "0.005") as server:
        url = server.url + "/v2/models/tiny_features/infer"
        status, answer, _ = post_json(url, _files_request([_large_jpeg()]))
        assert status == 504 and "deadline" in answer["error"]
        assert server.metric("fexport_images_total") == 0
        assert server.metric("fexport_queue_images") == 0
        assert get(server.url + "/v2/health/live")[0] == 200


def test_sigterm_answers_every_accepted_request_and_exits_0():
    # SIGTERM arrives while all 8 requests are admitted, their large JPEGs still decoding.
    server = Server(TINY)
    try:
        files = [_large_jpeg(seed) for seed in range(8)]
        expected = FeatureExtractor(TINY).extract(files)
        url = server.url + "/v2/models/tiny_features/infer"
        with ThreadPoolExecutor(len(files)) as pool:
            answers = [pool.submit(post_json, url, _files_request([f])) for f in files]
            _wait_for_queue(server, len(files))
            assert server.terminate() == 0
            results = [answer.result(timeout=60) for answer in answers]
        for (status, answer, _), row in zip(results, expected):
            assert status == 200
            assert max_rel(row[None], np.asarray(answer["outputs"][0]["data"],
                                                  np.float32)[None]) <= SAME_ENGINE_RTOL
        with pytest.raises(OSError):
            get(server.url + "/v2/health/live", timeout=2)
    finally:
        server.stop()
