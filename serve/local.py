"""Running the app on this machine: the models opened by name, under uvicorn.

uvicorn is told to stop accepting on SIGTERM (its own handling), to wait for the requests it has
accepted, and to bound open connections; `run` returns once it has, so the process exits 0.
"""

from __future__ import annotations

import os
from pathlib import Path

from fexport.errors import UsageError
from fexport.extras import require

from .config import ServeConfig

# Open connections (each one a request in flight or an idle keep-alive) past which uvicorn
# answers 503 at once: a bound on the server's memory that 32-client loads stay far below.
MAX_CONNECTIONS = 1024


def model_names(paths, names=None) -> list[str]:
    """Each model's name: its file's stem, or the one given; every name once."""
    chosen = list(names) if names else [Path(p).name.removesuffix(".onnx") for p in paths]
    if len(chosen) != len(paths):
        raise UsageError(f"{len(chosen)} names for {len(paths)} models: give one --name per "
                         "model, in the same order, or none")
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"models named {chosen}: each name must be different; pass --name "
                         "for each model")
    return chosen


def open_models(paths, names=None, **extractor_options) -> dict:
    """{name: FeatureExtractor} for the ONNX files, opened with the extractor's keywords."""
    from fexport.runtime import FeatureExtractor

    return {name: FeatureExtractor(path, **extractor_options)
            for name, path in zip(model_names(paths, names), paths)}


def run(models: dict, config: ServeConfig | None = None, host="127.0.0.1", port=8000,
        log_level="warning") -> None:
    """Serve `models` until SIGTERM or SIGINT; returns after answering what was accepted."""
    uvicorn = require("uvicorn", "fexport serve")
    from .app import create_app

    config = config or ServeConfig()
    app = create_app(models, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level,
                limit_concurrency=MAX_CONNECTIONS,
                # Accepted requests get their deadline and a little more to be answered.
                timeout_graceful_shutdown=int(config.request_timeout) + 5,
                access_log=os.environ.get("FEXPORT_ACCESS_LOG") == "1")
