"""Where Keras keeps pretrained weights, and a quick look at whether it could fetch them.

Keras learns that the network is absent only after TensorFlow has loaded and the model has been
built (10 to 25 s). When the weights are not in Keras's cache and the weights' host name does not
even resolve, the export is refused before any of that, in the same words.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

from fexport.errors import WeightsUnavailableError

from . import find

WEIGHTS_HOST = "storage.googleapis.com"  # where keras.applications downloads its weights
RESOLVE_WAIT_S = 3.0  # a resolver that hangs longer is not "plainly absent": let Keras try


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def check_download_possible(model, weights, cache=None, host=WEIGHTS_HOST) -> None:
    """WeightsUnavailableError when `model` (a registry name) needs imagenet weights that are
    not cached and `host` does not resolve; otherwise nothing (Keras then decides)."""
    spec = find(model) if isinstance(model, str) and not os.path.exists(model) else None
    if spec is None or weights != "imagenet" or _cached(spec.name, cache or keras_cache()):
        return
    if _does_not_resolve(host):
        raise WeightsUnavailableError(
            f"cannot download the imagenet weights of {spec.name}: the weights' host {host} "
            "does not resolve (no network?). Put the weights file in "
            f"{cache or keras_cache()}, or pass --weights none (random init) or --weights PATH.")


def _cached(name: str, cache: Path) -> bool:
    """Whether the cache holds a file for this model: Keras names them after the model in its
    own spelling (vgg16_weights_..., convnext_tiny_notop.h5, weights_mobilenet_v3_small_...),
    so names are compared without separators."""
    key = _letters(name)
    return cache.is_dir() and any(key in _letters(f.name) for f in cache.iterdir())


def _letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _does_not_resolve(host: str) -> bool:
    outcome = []

    def resolve():
        try:
            socket.getaddrinfo(host, 443)
            outcome.append(False)
        except (socket.gaierror, UnicodeError):
            outcome.append(True)

    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(RESOLVE_WAIT_S)
    return bool(outcome and outcome[0])
