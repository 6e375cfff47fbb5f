"""The backbone registry: pure data and lookups, no TensorFlow."""

from __future__ import annotations

import difflib

from fexport.errors import ModelNotFoundError

from . import preprocessing
from .registry import SPECS, ModelSpec

_BY_KEY = {spec.name.lower(): spec for spec in SPECS}

__all__ = ["SPECS", "ModelSpec", "find", "get", "names", "preprocessing"]


def names() -> list[str]:
    return [spec.name for spec in SPECS]


def find(name: str) -> ModelSpec | None:
    """The spec for `name`, spelled in any case ("vgg16" is "VGG16"), or None."""
    return _BY_KEY.get(str(name).lower().replace("-", "").replace("_", ""))


def get(name: str) -> ModelSpec:
    spec = find(name)
    if spec is None:
        raise ModelNotFoundError(f"unknown model {name!r}: not a file, not a registered "
                                 f"backbone and not a KerasHub preset.{suggest(name)} "
                                 f"`fexport models` lists all {len(SPECS)} and the KerasHub "
                                 "families (presets need the hub extra).")
    return spec


def suggest(name: str) -> str:
    close = difflib.get_close_matches(str(name).lower(), list(_BY_KEY), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + ", ".join(_BY_KEY[k].name for k in close) + "?"
