"""POST /v1/embeddings in OpenAI's shape, for images.

`input` is one image or a list: each a base64 string of the file, or a data URI
(`data:image/jpeg;base64,...`). The server never fetches URLs: an http(s) address is refused.
`encoding_format` "float" gives lists of numbers, "base64" the little-endian float32 bytes in
base64 (what OpenAI's clients decode).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from fexport.errors import RequestError

FORMATS = ("float", "base64")


@dataclass
class EmbeddingsRequest:
    model: str
    files: list[bytes]
    encoding_format: str


def parse_embeddings(body: bytes) -> EmbeddingsRequest:
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request is not valid JSON ({exc}); expected "
                           '{"model": ..., "input": [...]}') from None
    if not isinstance(request, dict) or not isinstance(request.get("model"), str):
        raise RequestError('expected a JSON object with "model" (a model\'s name) and "input" '
                           "(a base64 image or data URI, or a list of them)")
    items = request.get("input")
    items = [items] if isinstance(items, str) else items
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RequestError('"input" must be a base64 image or data URI, or a non-empty list of '
                           "them")
    encoding = request.get("encoding_format", "float")
    if encoding not in FORMATS:
        raise RequestError(f'"encoding_format" {encoding!r}: expected one of {", ".join(FORMATS)}')
    return EmbeddingsRequest(request["model"], [_decode(i, text) for i, text in
                                                enumerate(items)], encoding)


def _decode(index: int, text: str) -> bytes:
    if text.startswith(("http://", "https://", "ftp://", "file:")):
        raise RequestError(f"input {index} is a URL; this server never fetches URLs: send the "
                           "image itself, base64-encoded or as a data URI")
    if text.startswith("data:"):
        meta, _, text = text.partition(",")
        if not meta.endswith(";base64"):
            raise RequestError(f"input {index}: a data URI must be base64 "
                               "(data:image/jpeg;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise RequestError(f"input {index} is not base64; expected a base64 image file or a "
                           "data URI") from None


def encode_embeddings(request: EmbeddingsRequest, features: np.ndarray) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": _vector(row, request)}
            for i, row in enumerate(features)]
    return json.dumps({"object": "list", "data": data, "model": request.model,
                       "usage": {"prompt_tokens": 0, "total_tokens": 0}}).encode()


def _vector(row: np.ndarray, request: EmbeddingsRequest):
    if request.encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(row, "<f4").tobytes()).decode()
    return row.tolist()
