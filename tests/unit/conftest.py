"""Fixtures of the unit layer: the committed tiny model (tests/data/tiny_features.onnx), its
numpy reference, variants of it with another contract in their metadata, and small image
folders written with Pillow. Nothing here needs TensorFlow, tf2onnx or onnx."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_features.onnx"
SIZE, FEATURES = 16, 4  # the tiny model: (N, 16, 16, 3) pixels in, (N, 4) features out
METADATA_KEY = "fexport.contract"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_tiny_onnx", DATA / "make_tiny_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_tiny_onnx = _load_script()


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY


@pytest.fixture(scope="session")
def tiny_script():
    """tests/data/make_tiny_onnx.py as a module (its onnx import is inside `build`)."""
    return make_tiny_onnx


@pytest.fixture(scope="session")
def expected_features():
    """The tiny model's features computed with numpy: an independent reference."""
    return make_tiny_onnx.expected_features


@pytest.fixture(scope="session")
def pixels() -> np.ndarray:
    """Five (16, 16, 3) float32 RGB images of whole values 0..255."""
    rng = np.random.default_rng(17)
    return rng.integers(0, 256, (5, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, pixels) -> Path:
    """The `pixels` as lossless PNGs at the model's size: img0.png .. img4.png, the last one in
    a subfolder (folders are listed recursively), so file i holds pixels[i] exactly."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir()
    for i, image in enumerate(pixels):
        target = folder / ("sub" if i == len(pixels) - 1 else "") / f"img{i}.png"
        Image.fromarray(image.astype(np.uint8)).save(target)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def image_paths(image_folder) -> list[str]:
    """The PNGs of `image_folder`, in the order they hold `pixels`."""
    return [str(image_folder / "img0.png"), str(image_folder / "img1.png"),
            str(image_folder / "img2.png"), str(image_folder / "img3.png"),
            str(image_folder / "sub" / "img4.png")]


# The tiny model with other metadata, written without the onnx package: ModelProto's
# metadata_props is field 14, entries of key = 1 and value = 2 (see runtime/contract.py); this
# encoder is written from the protobuf wire format, not from fexport's reader.
def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return encode_varint(field_number << 3 | 2) + encode_varint(len(payload)) + payload


def metadata_entry(key: str, value: str) -> bytes:
    entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
    return _length_delimited(14, entry)


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def without_metadata(data: bytes) -> bytes:
    """A serialized ModelProto with its metadata_props fields removed."""
    kept, pos = bytearray(), 0
    while pos < len(data):
        start = pos
        tag, pos = _decode_varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _decode_varint(data, pos)
        elif wire == 2:
            size, pos = _decode_varint(data, pos)
            pos += size
        else:
            pos += 8 if wire == 1 else 4
        if tag >> 3 != 14:
            kept += data[start:pos]
    return bytes(kept)


@pytest.fixture
def plain_model(tmp_path) -> Path:
    """The tiny model without fexport metadata: an ONNX file "made elsewhere"."""
    path = tmp_path / "plain.onnx"
    path.write_bytes(without_metadata(TINY.read_bytes()))
    return path


@pytest.fixture
def tiny_variant(tmp_path):
    """write(name, **changes): the tiny model with its contract changed (same graph)."""
    def write(name="variant.onnx", **changes):
        contract = json.loads(make_tiny_onnx.contract().to_json())
        for key, value in changes.items():
            if key == "input":
                contract["input"].update(value)
            else:
                contract[key] = value
        path = tmp_path / name
        path.write_bytes(without_metadata(TINY.read_bytes())
                         + metadata_entry(METADATA_KEY, json.dumps(contract)))
        return path
    return write
