"""The Open Inference Protocol v2 over REST (KServe v2), with Triton's binary tensor extension.

A request is JSON, or JSON followed by binary tensor data: then the header
`Inference-Header-Content-Length` says where the JSON ends, and each input with a
`parameters.binary_data_size` takes that many bytes of what follows, in input order. BYTES
elements in binary are each a 4-byte little-endian length and the bytes; in JSON they are
base64 strings (an image file is not text). The response is JSON, or JSON followed by the
features' raw float32 bytes when the request asks for binary output (tritonclient.http's
default). Plain functions on bytes: the web framework stays in app.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from fexport.errors import RequestError

NUMERIC = {"FP32": np.float32, "UINT8": np.uint8, "FP16": np.float16, "FP64": np.float64,
           "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
           "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_}
HEADER_LENGTH = "inference-header-content-length"
OUTPUT = "features"


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: object  # a numpy array, or a list of bytes for BYTES


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    binary_output: bool


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request in `body`; RequestError saying what is wrong with it."""
    split = _header_length(header_length, len(body))
    header = _json(body[:split])
    raw = memoryview(body)[split:]
    inputs, used = [], 0
    for spec in _list(header, "inputs"):
        tensor, size = _tensor(spec, raw[used:])
        inputs.append(tensor)
        used += size
    if used != len(raw):
        raise RequestError(f"the request carries {len(raw)} bytes of binary data after its "
                           f"JSON, but its inputs' binary_data_size add up to {used}")
    return InferRequest(_request_id(header), inputs, _wants_binary(header))


def _header_length(value: str | None, body_size: int) -> int:
    if value is None:
        return body_size
    if not value.strip().isdigit() or int(value) > body_size:
        raise RequestError(f"Inference-Header-Content-Length {value!r}: expected the JSON "
                           f"header's size in bytes, at most the body's {body_size}")
    return int(value)


def _json(data) -> dict:
    try:
        header = json.loads(bytes(data))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request is not valid JSON ({exc}); expected an inference "
                           "request object, with Inference-Header-Content-Length when binary "
                           "data follows it") from None
    if not isinstance(header, dict):
        raise RequestError(f"the request's JSON is a {type(header).__name__}; expected an "
                           'object such as {"inputs": [...]}')
    return header


def _list(header: dict, key: str) -> list:
    value = header.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise RequestError(f"the request's {key!r} is {_shown(value)}; expected a non-empty "
                           "list of objects")
    return value


def _request_id(header: dict) -> str | None:
    value = header.get("id")
    return value if isinstance(value, str) else None


def _wants_binary(header: dict) -> bool:
    """Binary output when `features` is asked for with binary_data, or when no output is
    named and parameters.binary_data_output is true (as tritonclient.http sends)."""
    outputs = header.get("outputs")
    if outputs is None:
        return bool(_parameters(header).get("binary_data_output", False))
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise RequestError(f"the request's 'outputs' is {_shown(outputs)}; expected a list of "
                           f'objects such as {{"name": "{OUTPUT}"}}')
    names = {o.get("name") for o in outputs}
    if names - {OUTPUT}:
        raise RequestError(f"the request asks for outputs {sorted(map(str, names))}; this "
                           f"model has one output, {OUTPUT!r}")
    return any(_parameters(o).get("binary_data", False) for o in outputs)


def _parameters(obj: dict) -> dict:
    value = obj.get("parameters") or {}
    if not isinstance(value, dict):
        raise RequestError(f"'parameters' is {_shown(value)}; expected an object")
    return value


def _tensor(spec: dict, raw: memoryview) -> tuple[Tensor, int]:
    """One input, and how many bytes of the binary data it took."""
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or datatype not in (*NUMERIC, "BYTES") or not _is_shape(shape):
        raise RequestError(f"an input with name {_shown(name)}, datatype {_shown(datatype)} and "
                           f"shape {_shown(shape)}: expected a name, a datatype among BYTES, "
                           "UINT8 and FP32, and a shape of whole numbers")
    size = _parameters(spec).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(raw):
            raise RequestError(f"input {name!r} declares binary_data_size {_shown(size)}, but "
                               f"{len(raw)} bytes of binary data are left")
        return Tensor(name, datatype, shape, _from_binary(name, datatype, shape,
                                                          raw[:size])), size
    if "data" not in spec:
        raise RequestError(f"input {name!r} has neither 'data' nor "
                           "parameters.binary_data_size")
    return Tensor(name, datatype, shape, _from_json(name, datatype, shape, spec["data"])), 0


def _is_shape(shape) -> bool:
    return isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)


def _from_binary(name, datatype, shape, raw: memoryview):
    count = math.prod(shape)
    if datatype == "BYTES":
        return _check_count(name, shape, _length_prefixed(name, raw))
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(f"input {name!r}: {len(raw)} bytes of binary data for a {datatype} "
                           f"tensor of shape {shape}, which takes {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype).astype(NUMERIC[datatype]).reshape(shape)


def _length_prefixed(name, raw: memoryview) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(f"input {name!r}: its BYTES data ends inside a 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise RequestError(f"input {name!r}: an element says it holds {length} bytes, but "
                               f"only {len(raw) - offset - 4} are left")
        items.append(bytes(raw[offset + 4:offset + 4 + length]))
        offset += 4 + length
    return items


def _from_json(name, datatype, shape, data):
    if datatype == "BYTES":
        return _check_count(name, shape, [_base64(name, i, v) for i, v in
                                          enumerate(_flat(data))])
    try:
        array = np.asarray(data, dtype=NUMERIC[datatype])
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"input {name!r}: its data is not a list of {datatype} numbers "
                           f"({exc})") from None
    if array.size != math.prod(shape):
        raise RequestError(f"input {name!r}: {array.size} values for shape {shape}, which "
                           f"takes {math.prod(shape)}")
    return array.reshape(shape)


def _flat(data) -> list:
    if not isinstance(data, list):
        return [data]
    return [item for element in data for item in _flat(element)]


def _base64(name, index, value) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise RequestError(f"input {name!r} element {index}: in JSON, BYTES elements are "
                           "base64 strings of the image files; send base64, or send the files "
                           "as binary data") from None


def _check_count(name, shape, items: list[bytes]) -> list[bytes]:
    if len(shape) != 1 or shape[0] != len(items):
        raise RequestError(f"input {name!r}: {len(items)} BYTES elements for shape {shape}; "
                           f"expected shape [{len(items)}], one encoded image an element")
    return items


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def encode_response(model: str, request: InferRequest, features: np.ndarray):
    """(body, headers) of the answer: JSON, or JSON + the features' float32 bytes."""
    output = {"name": OUTPUT, "datatype": "FP32", "shape": list(features.shape)}
    answer = {"model_name": model, "model_version": "1", "outputs": [output]}
    if request.id is not None:
        answer["id"] = request.id
    if not request.binary_output:
        output["data"] = features.ravel().tolist()
        return json.dumps(answer).encode(), {"content-type": "application/json"}
    raw = np.ascontiguousarray(features, "<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(answer).encode()
    return header + raw, {"content-type": "application/octet-stream",
                          HEADER_LENGTH: str(len(header))}
