"""The Open Inference Protocol parser and encoder, and /v1/embeddings, on bytes alone. Requests
here are built from the protocol's text (KServe v2 with Triton's binary tensor extension), not
from fexport's encoder."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fexport.errors import RequestError
from fexport.serve import embeddings, protocol


def binary_request(files: list[bytes], outputs=None) -> tuple[bytes, str]:
    """A BYTES input sent as binary: each element a 4-byte little-endian length, then it."""
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(files)],
                          "parameters": {"binary_data_size": len(raw)}}]}
    if outputs is not None:
        header["outputs"] = outputs
    text = json.dumps(header).encode()
    return text + raw, str(len(text))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6))
def test_binary_bytes_elements_come_back_as_sent(files):
    body, length = binary_request(files)
    request = protocol.parse_request(body, length)
    assert request.inputs[0].data == files and not request.binary_output


def test_binary_fp32_and_json_uint8_tensors():
    pixels = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    header = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 3, 3],
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    request = protocol.parse_request(header + pixels.astype("<f4").tobytes(), str(len(header)))
    assert np.array_equal(request.inputs[0].data, pixels) and request.binary_output
    as_json = json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 2],
                                      "data": [[7, 255]]}]}).encode()
    tensor = protocol.parse_request(as_json, None).inputs[0]
    assert tensor.data.dtype == np.uint8 and tensor.data.tolist() == [[7, 255]]


@pytest.mark.parametrize("cut, words", [
    (lambda body, n: (body, str(len(body) + 1)), "at most the body"),
    (lambda body, n: (body, "-3"), "expected the JSON header's size"),
    (lambda body, n: (body, str(int(n) - 2)), "not valid JSON"),
    (lambda body, n: (body[:-1], n), "bytes of binary data are left"),
    (lambda body, n: (body + b"extra", n), "add up to"),
])
def test_lying_lengths_are_refused(cut, words):
    body, length = binary_request([b"abc", b"defg"])
    with pytest.raises(RequestError, match=words):
        protocol.parse_request(*cut(body, length))


def test_an_element_longer_than_the_data_is_refused():
    raw = struct.pack("<I", 100) + b"short"
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    with pytest.raises(RequestError, match="holds 100 bytes"):
        protocol.parse_request(header + raw, str(len(header)))


@pytest.mark.parametrize("header, words", [
    ([], "JSON is a list"),
    ({"inputs": []}, "non-empty list"),
    ({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1]}]}, "datatype"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, -2], "data": [1]}]}, "shape"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]},
     "2 values for shape"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]},
     "not a list of FP32"),
    ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["%%"]}]},
     "base64"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither 'data'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
      "outputs": [{"name": "logits"}]}, "one output, 'features'"),
])
def test_malformed_requests_say_what_was_expected(header, words):
    with pytest.raises(RequestError, match=words):
        protocol.parse_request(json.dumps(header).encode(), None)


def test_responses_in_json_and_binary():
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, length = binary_request([b"a"], outputs=[{"name": "features",
                                                    "parameters": {"binary_data": True}}])
    request = protocol.parse_request(body, length)
    payload, headers = protocol.encode_response("m", request, features)
    split = int(headers[protocol.HEADER_LENGTH])
    answer = json.loads(payload[:split])
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == features.nbytes
    assert np.array_equal(np.frombuffer(payload[split:], "<f4").reshape(2, 3), features)
    request.binary_output = False
    payload, headers = protocol.encode_response("m", request, features)
    assert json.loads(payload)["outputs"][0]["data"] == features.ravel().tolist()
    assert protocol.HEADER_LENGTH not in headers


def test_embeddings_requests_and_answers():
    png = b"\x89PNG fake"
    text = json.dumps({"model": "m", "input": ["data:image/png;base64," +
                                               base64.b64encode(png).decode(),
                                               base64.b64encode(png).decode()],
                       "encoding_format": "base64"}).encode()
    request = embeddings.parse_embeddings(text)
    assert request.files == [png, png] and request.model == "m"
    rows = np.array([[1.5, -2.0], [0.0, 3.25]], np.float32)
    answer = json.loads(embeddings.encode_embeddings(request, rows))
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in answer["data"]]
    assert np.array_equal(np.stack(decoded), rows)
    for bad, words in (({"model": "m", "input": "http://x/y.jpg"}, "never fetches"),
                       ({"model": "m", "input": []}, "non-empty list"),
                       ({"model": "m", "input": "aGk=", "encoding_format": "int"}, "float"),
                       ({"input": "aGk="}, '"model"')):
        with pytest.raises(RequestError, match=words):
            embeddings.parse_embeddings(json.dumps(bad).encode())
