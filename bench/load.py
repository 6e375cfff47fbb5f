"""A closed-loop HTTP load: `clients` threads, each on its own keep-alive connection, sending
prepared v2 infer requests (binary tensors, as tritonclient sends them) for a fixed time.

Requests are encoded before the clock starts, so the client's share of the CPU is sending and
reading bytes; it still runs on the same cores as the server, which the report says.
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    clients: int
    seconds: float
    requests: int
    images: int
    errors: int
    images_per_s: float
    p50_ms: float
    p99_ms: float


def files_request(files: list[bytes]) -> tuple[bytes, dict]:
    """A binary v2 request of encoded image files, and its headers."""
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    return _binary({"name": "images", "datatype": "BYTES", "shape": [len(files)]}, raw)


def pixels_request(pixels: np.ndarray) -> tuple[bytes, dict]:
    """A binary v2 request of a UINT8 pixel tensor in the model's layout, and its headers."""
    return _binary({"name": "pixels", "datatype": "UINT8", "shape": list(pixels.shape)},
                   np.ascontiguousarray(pixels, np.uint8).tobytes())


def _binary(tensor: dict, raw: bytes) -> tuple[bytes, dict]:
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor], "outputs": [
        {"name": "features", "parameters": {"binary_data": True}}]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header)),
                          "Content-Type": "application/octet-stream"}


def run(port: int, path: str, requests: list, images_per_request: int, clients: int,
        seconds: float, max_requests: int = 100_000) -> LoadResult:
    """Send `requests` ((body, headers), round robin) from `clients` threads for `seconds`."""
    latencies, errors, lock = [], [0], threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, i = [], offset
        while time.perf_counter() < stop_at and len(mine) < max_requests:
            body, headers = requests[i % len(requests)]
            started = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                mine.append(time.perf_counter() - started)
            else:
                with lock:
                    errors[0] += 1
            i += clients
        connection.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _result(clients, time.perf_counter() - started, latencies, errors[0],
                   images_per_request)


def _result(clients, elapsed, latencies, errors, images_per_request) -> LoadResult:
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    images = len(latencies) * images_per_request
    return LoadResult(clients, round(elapsed, 2), len(latencies), images, errors,
                      round(images / elapsed, 1), round(float(np.percentile(ms, 50)), 1),
                      round(float(np.percentile(ms, 99)), 1))
