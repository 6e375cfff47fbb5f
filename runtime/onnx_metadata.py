"""An ONNX file's metadata_props, read straight from its protobuf bytes.

The contract lives in ModelProto.metadata_props (field 14, entries of key = 1 and value = 2).
Reading it this way needs neither the onnx package nor an inference engine, and skips the graph
(hundreds of MB for large models) by seeking over it, so the contract can decide which engine
opens the file.
"""

from __future__ import annotations

import io

from fexport.errors import FexportError

METADATA_PROPS = 14
LENGTH_DELIMITED, VARINT, FIXED64, FIXED32 = 2, 0, 1, 5


def read_metadata(path) -> dict[str, str]:
    """{key: value} of the file's metadata_props; FexportError when it is not protobuf."""
    props = {}
    with open(path, "rb") as f:
        for field, value in _fields(f, keep=METADATA_PROPS):
            if field == METADATA_PROPS:
                entry = dict(_fields(io.BytesIO(value), keep=None))
                props[_text(entry.get(1))] = _text(entry.get(2))
    return props


def _fields(stream, keep):
    """(field number, value) of each top-level field; length-delimited values are read only
    for the field `keep` (None: all), others are skipped."""
    while (tag := _varint(stream)) is not None:
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            yield field, _varint(stream)
        elif wire == LENGTH_DELIMITED:
            size = _varint(stream)
            if size is None:
                raise FexportError("not an ONNX file: it ends inside a protobuf field")
            if keep is None or field == keep:
                yield field, stream.read(size)
            else:
                stream.seek(size, io.SEEK_CUR)
        elif wire in (FIXED64, FIXED32):
            stream.seek(8 if wire == FIXED64 else 4, io.SEEK_CUR)
        else:
            raise FexportError(f"not an ONNX file: protobuf wire type {wire} in field {field}")


def _varint(stream) -> int | None:
    result, shift = 0, 0
    while byte := stream.read(1):
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise FexportError("not an ONNX file: a malformed protobuf varint")
    if shift:
        raise FexportError("not an ONNX file: it ends inside a protobuf varint")
    return None


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else ""
