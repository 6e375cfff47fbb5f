"""`fexport serve` as a production engineer meets it: a real server subprocess on 127.0.0.1,
spoken to by tritonclient.http (a client nobody here wrote) and by plain HTTP, with real photos
and a trained network; concurrency, bad inputs, overload and SIGTERM, each loop bounded."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image

from fexport.comparison import max_rel
from fexport.runtime import FeatureExtractor
from serving import Server, get, post_json

TINY = Path(__file__).parent / "data" / "tiny_features.onnx"  # (N, 16, 16, 3) -> (N, 4)
# Same engine, same file, same decoding: only the batch the rows ran in differs (ONNX Runtime's
# kernels tile by batch size), which moves float32 sums by a few ulps, far below 1e-6.
SAME_ENGINE_RTOL = 1e-6


def _png(seed, size=(20, 24)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_bytes(photo_paths) -> list[bytes]:
    return [Path(p).read_bytes() for p in photo_paths]


@pytest.fixture(scope="module")
def resnet8_server(resnet8_onnx):
    with Server(resnet8_onnx, "--name", "resnet8") as server:
        yield server


@pytest.fixture(scope="module")
def tiny_server():
    # A wide batching window, so concurrent requests share batches.
    with Server(TINY, "--max-delay-ms", "20", "--max-batch-size", "16") as server:
        yield server


def _triton_files(client, model, files, binary_output=True):
    tensor = triton_http.InferInput("images", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=object))
    output = triton_http.InferRequestedOutput("features", binary_data=binary_output)
    return client.infer(model, [tensor], outputs=[output]).as_numpy("features")


def test_tritonclient_gets_extracts_features_from_real_photos(resnet8_server, resnet8_onnx,
                                                              photo_paths, photo_bytes):
    expected = FeatureExtractor(resnet8_onnx).extract(photo_paths)
    client = triton_http.InferenceServerClient(resnet8_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet8")
    for binary_output in (True, False):
        features = _triton_files(client, "resnet8", photo_bytes, binary_output)
        assert features.shape == expected.shape == (len(photo_paths), 64)
        assert max_rel(expected, features) <= SAME_ENGINE_RTOL
    one = _triton_files(client, "resnet8", photo_bytes[:1])  # batch 1
    assert max_rel(expected[:1], one) <= SAME_ENGINE_RTOL


def test_tritonclient_pixels_in_the_model_layout(resnet8_server, resnet8_onnx):
    client = triton_http.InferenceServerClient(resnet8_server.url.removeprefix("http://"))
    pixels = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3))
    expected = FeatureExtractor(resnet8_onnx).extract(pixels.astype(np.float32))
    metadata = client.get_model_metadata("resnet8")
    onnx_name = metadata["parameters"]["pixels_also_named"]
    for name, dtype, datatype in (("pixels", np.float32, "FP32"),
                                  (onnx_name, np.uint8, "UINT8")):
        tensor = triton_http.InferInput(name, list(pixels.shape), datatype)
        tensor.set_data_from_numpy(pixels.astype(dtype))
        features = client.infer("resnet8", [tensor]).as_numpy("features")
        assert max_rel(expected, features) <= SAME_ENGINE_RTOL


def test_metadata_describes_inputs_and_output(resnet8_server):
    status, body = get(resnet8_server.url + "/v2/models/resnet8")
    metadata = json.loads(body)
    assert status == 200 and metadata["name"] == "resnet8"
    assert {(i["name"], i["datatype"], tuple(i["shape"])) for i in metadata["inputs"]} == {
        ("images", "BYTES", (-1,)), ("pixels", "FP32", (-1, 32, 32, 3))}
    assert metadata["outputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 64]}]
    assert get(resnet8_server.url + "/v2/models/resnet8/ready")[0] == 200
    assert get(resnet8_server.url + "/v2/models/nothing/ready")[0] == 404


def test_plain_json_with_base64_files_and_with_pixels(resnet8_server, resnet8_onnx,
                                                      photo_paths, photo_bytes):
    expected = FeatureExtractor(resnet8_onnx).extract(photo_paths[:3])
    files = [base64.b64encode(data).decode() for data in photo_bytes[:3]]
    url = resnet8_server.url + "/v2/models/resnet8/infer"
    status, answer, _ = post_json(url, {"id": "r1", "inputs": [
        {"name": "images", "datatype": "BYTES", "shape": [3], "data": files}]})
    assert status == 200 and answer["id"] == "r1"
    (output,) = answer["outputs"]
    assert output["name"] == "features" and output["shape"] == [3, 64]
    features = np.asarray(output["data"], np.float32).reshape(3, 64)
    assert max_rel(expected, features) <= SAME_ENGINE_RTOL


def test_embeddings_in_the_openai_shape(resnet8_server, resnet8_onnx, photo_paths,
                                        photo_bytes):
    expected = FeatureExtractor(resnet8_onnx).extract(photo_paths[:2])
    data_uri = "data:image/png;base64," + base64.b64encode(photo_bytes[0]).decode()
    url = resnet8_server.url + "/v1/embeddings"
    status, answer, _ = post_json(url, {"model": "resnet8", "input": [
        data_uri, base64.b64encode(photo_bytes[1]).decode()]})
    assert status == 200 and answer["object"] == "list" and answer["model"] == "resnet8"
    rows = np.array([item["embedding"] for item in answer["data"]], np.float32)
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert max_rel(expected, rows) <= SAME_ENGINE_RTOL
    status, answer, _ = post_json(url, {"model": "resnet8", "encoding_format": "base64",
                                        "input": data_uri})
    row = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), "<f4")
    assert status == 200 and max_rel(expected[:1], row[None]) <= SAME_ENGINE_RTOL
    status, answer, _ = post_json(url, {"model": "resnet8", "input": "https://example.com/a.jpg"})
    assert status == 400 and "never fetches URLs" in answer["error"]


def _tiny_expected(files):
    return FeatureExtractor(TINY).extract(files)


def test_32_concurrent_clients_each_get_their_own_rows(tiny_server):
    files = [_png(seed) for seed in range(40)]
    expected = _tiny_expected(files)
    url = tiny_server.url + "/v2/models/tiny_features/infer"
    batches_before = tiny_server.metric("fexport_batch_size_count")
    images_before = tiny_server.metric("fexport_batch_size_sum")

    def client(k):
        start, count = (7 * k) % 33, 1 + k % 7  # mixed sizes: 1 to 7 images
        chosen = files[start:start + count]
        status, answer, _ = post_json(url, {"inputs": [{
            "name": "images", "datatype": "BYTES", "shape": [len(chosen)],
            "data": [base64.b64encode(f).decode() for f in chosen]}]})
        assert status == 200, answer
        rows = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(len(chosen), 4)
        return max_rel(expected[start:start + count], rows)

    with ThreadPoolExecutor(32) as pool:
        errors = list(pool.map(client, range(64)))
    assert max(errors) <= SAME_ENGINE_RTOL
    batches = tiny_server.metric("fexport_batch_size_count") - batches_before
    images = tiny_server.metric("fexport_batch_size_sum") - images_before
    assert images == sum(1 + k % 7 for k in range(64))
    assert images / batches > 1  # requests really shared batches


def test_metrics_page_names_every_stage(tiny_server):
    post_json(tiny_server.url + "/v2/models/tiny_features/infer", {"inputs": [{
        "name": "images", "datatype": "BYTES", "shape": [1],
        "data": [base64.b64encode(_png(1)).decode()]}]})
    text = get(tiny_server.url + "/metrics")[1].decode()
    for name in ("fexport_requests_total", "fexport_images_total", "fexport_batches_total",
                 "fexport_batch_size_bucket", "fexport_queue_seconds_bucket",
                 "fexport_decode_seconds_bucket", "fexport_compute_seconds_bucket",
                 "fexport_request_seconds_bucket", "fexport_queue_images"):
        assert name in text, name
    assert 'fexport_requests_total{endpoint="infer",model="tiny_features",status="200"}' in text
