"""The ASGI app: Open Inference Protocol v2 endpoints, /v1/embeddings and /metrics (Starlette).

Starlette was picked for being the ASGI toolkit FastAPI itself is built on, without FastAPI's
validation layer: the request formats here are parsed by protocol.py, and the queue is ours
(batcher.py), bounded in images, which no framework we looked at gives (LitServe's is unbounded).

Every error is answered as JSON `{"error": message}` with the status below, and the server goes
on serving: the message says what was received and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np

from fexport.errors import (
    DeadlineError,
    FexportError,
    ImageError,
    ModelNotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    RequestError,
    UsageError,
)
from fexport.extras import require
from fexport.runtime import rings

from . import embeddings, protocol
from .config import ServeConfig
from .metrics import ServeMetrics
from .service import PIXEL_DATATYPES, ModelService

STATUS = ((PayloadTooLargeError, 413), (RequestError, 400), (ImageError, 400),
          (UsageError, 400), (ModelNotFoundError, 404), (QueueFullError, 429),
          (DeadlineError, 504))
# The two inputs, told apart by datatype: encoded image files (BYTES) or pixels (UINT8 or FP32,
# in the model's layout). The pixel input also answers to the ONNX input's own name, so a client
# written for the Triton repository that `fexport triton` writes works here unchanged.
FILES_INPUT, PIXELS_INPUT = "images", "pixels"


def create_app(models: dict, config: ServeConfig | None = None):
    """An ASGI app serving `models` ({name: FeatureExtractor}) with `config`'s limits."""
    starlette = _starlette()
    server = Server(models, config or ServeConfig())
    routes = [starlette.routing.Route(path, endpoint, methods=[method])
              for method, path, endpoint in server.routes()]
    app = starlette.applications.Starlette(routes=routes, lifespan=server.lifespan)
    app.state.fexport = server
    return app


def _starlette():
    require("starlette", "fexport serve")
    import starlette.applications
    import starlette.routing

    return starlette


class Server:
    """The app's state (models, metrics, decoding threads) and its endpoints."""

    def __init__(self, models: dict, config: ServeConfig):
        if not models:
            raise UsageError("no model to serve: pass at least one ONNX file")
        from starlette.responses import Response

        self._response, self.config, self.metrics = Response, config, ServeMetrics()
        self.decoder = rings.thread_pool(config.decode_workers)  # the extractor's own
        self.models = {name: ModelService(name, extractor, config, self.decoder,
                                          self.metrics.for_model(name))
                       for name, extractor in models.items()}

    def routes(self):
        return [("GET", "/v2", self.server_metadata),
                ("GET", "/v2/health/live", self.live),
                ("GET", "/v2/health/ready", self.ready),
                ("GET", "/v2/models/{name}", self.model_metadata),
                ("GET", "/v2/models/{name}/versions/{version}", self.model_metadata),
                ("GET", "/v2/models/{name}/ready", self.model_ready),
                ("GET", "/v2/models/{name}/versions/{version}/ready", self.model_ready),
                ("POST", "/v2/models/{name}/infer", self.infer),
                ("POST", "/v2/models/{name}/versions/{version}/infer", self.infer),
                ("POST", "/v1/embeddings", self.embed),
                ("GET", "/v1/models", self.list_models),
                ("GET", "/metrics", self.metrics_page)]

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        """Warm every model up in the background (live at once, ready once warm); at the end,
        answer what was accepted, then stop."""
        import asyncio

        warmup = asyncio.gather(*(model.start() for model in self.models.values()))
        try:
            yield
        finally:
            await warmup
            await asyncio.gather(*(model.stop() for model in self.models.values()))
            self.decoder.shutdown(wait=True)

    def _json(self, value, status=200, headers=None):
        return self._response(json.dumps(value).encode(), status, headers,
                              media_type="application/json")

    def _error(self, exc: Exception):
        status = next((code for kind, code in STATUS if isinstance(exc, kind)), 500)
        headers = {"retry-after": str(int(exc.retry_after))} \
            if isinstance(exc, QueueFullError) else None
        message = str(exc) if isinstance(exc, FexportError) else \
            f"internal error: {type(exc).__name__}: {exc}"
        return self._json({"error": message}, status, headers)

    def _model(self, name: str) -> ModelService:
        if name not in self.models:
            raise ModelNotFoundError(f"no model named {name!r}; this server has "
                                     f"{', '.join(sorted(self.models))}")
        return self.models[name]

    async def _answer(self, request, endpoint, model_name, handler):
        """Run `handler()`, turning any error into its JSON answer, and count the request."""
        started = time.perf_counter()
        try:
            response = await handler()
        except Exception as exc:
            response = self._error(exc)
        model_name = getattr(request.state, "fexport_model", model_name)
        label = model_name if model_name in self.models else ""
        self.metrics.request(label, endpoint, response.status_code,
                             time.perf_counter() - started)
        return response

    async def server_metadata(self, request):
        from fexport import __version__

        return self._json({"name": "fexport", "version": __version__, "extensions": [
            "binary_tensor_data"]})

    async def live(self, request):
        return self._json({"live": True})

    async def ready(self, request):
        ready = all(model.ready for model in self.models.values())
        return self._json({"ready": ready}, 200 if ready else 503)

    async def model_metadata(self, request):
        name = request.path_params["name"]
        return await self._answer(request, "metadata", name,
                                  lambda: self._metadata(self._model(name)))

    async def _metadata(self, model: ModelService):
        spec, contract = model.spec, model.extractor.contract
        pixel_type = "UINT8" if spec.dtype == "uint8" else "FP32"
        return self._json({
            "name": model.name, "versions": ["1"], "platform": "fexport_onnx",
            "inputs": [{"name": FILES_INPUT, "datatype": "BYTES", "shape": [-1]},
                       {"name": PIXELS_INPUT, "datatype": pixel_type,
                        "shape": model.pixel_shape()}],
            "outputs": [{"name": protocol.OUTPUT, "datatype": "FP32",
                         "shape": [-1, contract.feature_dim]}],
            "parameters": {"layout": spec.layout, "pixel_datatypes": list(PIXEL_DATATYPES),
                           "pixels_also_named": spec.name,
                           "backend": model.extractor.backend,
                           "precision": model.extractor.precision}})

    async def model_ready(self, request):
        name = request.path_params["name"]

        async def answer():
            model = self._model(name)
            answer = {"name": name, "ready": model.ready}
            if model.failure:
                answer["error"] = model.failure
            return self._json(answer, 200 if model.ready else 503)

        return await self._answer(request, "ready", name, answer)

    async def infer(self, request):
        name = request.path_params["name"]
        return await self._answer(request, "infer", name, lambda: self._infer(request, name))

    async def _infer(self, request, name):
        model = self._model(name)
        body = await read_body(request, self.config.max_body_bytes)
        parsed = protocol.parse_request(body, request.headers.get(protocol.HEADER_LENGTH))
        features = await infer_tensor(model, _one_input(parsed, model))
        payload, headers = protocol.encode_response(name, parsed, features)
        return self._response(payload, 200, headers)

    async def embed(self, request):
        async def answer():
            body = await read_body(request, self.config.max_body_bytes)
            parsed = embeddings.parse_embeddings(body)
            request.state.fexport_model = parsed.model
            features = await self._model(parsed.model).from_files(parsed.files)
            return self._response(embeddings.encode_embeddings(parsed, features), 200,
                                  media_type="application/json")

        return await self._answer(request, "embeddings", "", answer)

    async def list_models(self, request):
        return self._json({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "fexport"} for name in self.models]})

    async def metrics_page(self, request):
        payload, content_type = self.metrics.page()
        return self._response(payload, 200, {"content-type": content_type})


async def read_body(request, limit: int) -> bytes:
    """The whole body, refused past `limit` bytes (by its Content-Length, or as it streams)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"a body of {declared} bytes; this server takes at most "
                                   f"{limit} bytes a request: send fewer images at once")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"a body of more than {limit} bytes; this server takes "
                                       f"at most {limit} a request: send fewer images at once")
        chunks.append(chunk)
    return b"".join(chunks)


def _one_input(request: protocol.InferRequest, model: ModelService) -> protocol.Tensor:
    names = (FILES_INPUT, PIXELS_INPUT, model.spec.name)
    if len(request.inputs) != 1 or request.inputs[0].name not in names:
        got = [tensor.name for tensor in request.inputs]
        raise RequestError(f"inputs {got}: model {model.name!r} takes one input, either "
                           f"{FILES_INPUT!r} (BYTES, shape [N], encoded image files) or "
                           f"{PIXELS_INPUT!r} (UINT8 or FP32 pixels, shape "
                           f"{model.pixel_shape()})")
    return request.inputs[0]


async def infer_tensor(model: ModelService, tensor: protocol.Tensor) -> np.ndarray:
    if tensor.datatype == "BYTES":
        return await model.from_files(tensor.data)
    if tensor.datatype in PIXEL_DATATYPES:
        return await model.from_pixels(tensor.data)
    raise RequestError(f"input {tensor.name!r} of datatype {tensor.datatype}: expected BYTES "
                       f"(encoded image files) or {' or '.join(PIXEL_DATATYPES)} (pixels)")
