"""SHA-256 of a file and of bytes, the one way: what a resumed run checks its model by
(engines/resume.py) and what names a model's TensorRT engine cache (backends/tensorrt_provider)."""

from __future__ import annotations

import hashlib


def file_sha256(path) -> str:
    """The file's SHA-256, read a MiB at a time (models are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
