"""fexport's feature service: the Open Inference Protocol (KServe v2) and /v1/embeddings over
HTTP, with dynamic batching, bounded queues, limits and Prometheus metrics (`fexport serve`),
and a Triton model repository for those who run Triton (`fexport triton`).

`create_app(models, config)` gives the ASGI app, to run under any ASGI server or to mount inside
one's own service. The web stack is the `serve` extra; nothing here imports TensorFlow or onnx.
"""

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
