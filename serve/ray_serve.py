"""`fexport serve --engine ray`: the same app as a Ray Serve deployment, one app per replica.

Each replica opens the models and builds the app of app.py in the replica itself (an ONNX
Runtime session cannot be pickled): Serve calls `__serve_build_asgi_app__` after `__init__`
and runs the app's lifespan there, so every replica warms up, batches with its own bounded
queue and answers the same endpoints. Ray Serve's `max_ongoing_requests` (5 by default, which
silently caps `@serve.batch`, ray #43288) is set to the replica's queue size in images, the
app's own limit, so batching is bounded by fexport's queue, not by Serve's; past
`max_queued_requests` at the proxy, Serve answers 503 itself.

The proxy listens on `host` (127.0.0.1 by default); Ray's own processes bind as Ray binds them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from fexport.extras import require
from fexport.runtime.engines import ray_engine

from . import local
from .config import ServeConfig

APP_NAME = "fexport"


class FeatureService:
    """One replica: the models, opened here, and the app that serves them."""

    def __init__(self, model_files, names, config: ServeConfig, options: dict):
        self.models = local.open_models(model_files, names, **options)
        self.config = config

    def __serve_build_asgi_app__(self):
        from .app import create_app

        return create_app(self.models, self.config)


def deployment(model_files, names, config: ServeConfig, options: dict, replicas=1):
    """The bound Ray Serve application, ready for serve.run."""
    serve = _serve()
    cpus = int(options.get("threads") or 1)  # one onnxruntime thread per reserved CPU
    service = serve.deployment(
        name="FeatureService", num_replicas=replicas, max_ongoing_requests=config.max_queue,
        # Requests waiting at the proxy for a replica: as many as the replicas' own queues can
        # hold (a request has at least one image), so that fexport's queue answers 429 first;
        # past it, Serve answers 503. With 8 a replica, a loaded 2-core CI machine got 503s for
        # 32 concurrent clients while the replicas had room.
        max_queued_requests=config.max_queue * replicas,
        ray_actor_options={"num_cpus": cpus})(serve.ingress()(FeatureService))
    return service.bind(list(map(str, model_files)), names, config, options)


@dataclass
class RayService:
    """A running deployment; `close()` takes it down and disconnects from Ray."""

    url: str
    _resources: contextlib.ExitStack

    def close(self) -> None:
        self._resources.close()


def start(model_files, names, config: ServeConfig | None = None, options=None, *,
          host="127.0.0.1", port=8000, address=None, replicas=1) -> RayService:
    """Deploy on the Ray cluster at `address` (None: $RAY_ADDRESS or a local one); returns once
    every replica is up."""
    config, options = config or ServeConfig(), options or {}
    with contextlib.ExitStack() as resources:
        resources.enter_context(ray_engine.session(address))
        serve = _serve()
        serve.start(http_options={"host": host, "port": port})
        resources.callback(serve.shutdown)  # runs before the session ends
        serve.run(deployment(model_files, names, config, options, replicas), name=APP_NAME,
                  route_prefix="/", blocking=False)
        return RayService(f"http://{host}:{port}", resources.pop_all())


def _serve():
    return require("ray.serve", "fexport serve --engine ray (Ray Serve)")
