"""A real `fexport serve` in a subprocess on 127.0.0.1, and plain-HTTP helpers to talk to it.

Every wait is bounded: a server that does not get ready, or does not stop, fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

READY_TIMEOUT = 90  # s: the first start imports onnxruntime and warms every model up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`fexport serve MODELS... OPTIONS` on a free port of 127.0.0.1."""

    def __init__(self, *args, ready_line=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fexport", "serve", *map(str, args), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "FEXPORT_DEBUG": "0"})
        self.lines = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._wait_ready(ready_line)

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def _wait_ready(self, ready_line):
        """Until /v2/health/ready answers 200 (and `ready_line` is printed, if given)."""
        until = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read()}")
            printed = ready_line is None or any(ready_line in line for line in self.lines)
            with contextlib.suppress(OSError):
                if printed and get(self.url + "/v2/health/ready")[0] == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server was not ready within {READY_TIMEOUT} s")

    def terminate(self, timeout=60) -> int:
        """SIGTERM, then the exit status (killed, and failed, if it does not exit in time)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the server did not exit within {timeout} s of SIGTERM")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def metric(self, name: str) -> float:
        """The sum of every series of `name` on /metrics."""
        text = get(self.url + "/metrics")[1].decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name)] in " {")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def request(method, url, body=None, headers=None, timeout=60):
    """(status, body bytes, headers) of one request on a new connection; HTTP errors too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def get(url, timeout=10):
    return request("GET", url, timeout=timeout)[:2]


def post_json(url, value, timeout=60):
    """(status, decoded JSON, headers) of a JSON POST."""
    status, body, headers = request("POST", url, json.dumps(value).encode(),
                                    {"content-type": "application/json"}, timeout)
    try:
        return status, json.loads(body), headers
    except ValueError:  # not fexport's answer (a proxy's plain text): shown as it came
        return status, {"not_json": body.decode(errors="replace")}, headers
