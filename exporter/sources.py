"""What the user named as a model, decided in one place, for export and `layers` alike.

In this order: a KerasHub model (a live backbone or task, a preset directory, a `kaggle://` or
`hf://` handle, or a preset name that is not a registry name), a live Keras model, a model file
or SavedModel directory, else a keras.applications name from the registry (which refuses an
unknown name with suggestions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fexport import models
from fexport.errors import UsageError

from . import hub

HUB, LIVE, FILE, REGISTRY = "hub", "live", "file", "registry"


@dataclass(frozen=True)
class ModelSource:
    """A model source, resolved: what was given, what kind it is, its registry entry."""

    given: object
    kind: str  # HUB, LIVE, FILE or REGISTRY
    spec: models.ModelSpec | None = None  # the registry's entry, for REGISTRY only


@dataclass
class Source:
    """Where a model came from, as the contract records it."""

    name: str  # registry name, the absolute path of the user's file, or a live model's name
    kind: str  # "registry", "file" or "memory"
    weights: str = "none"
    seed: int | None = None
    include_top: bool = False
    loader: str = "keras"  # "keras" or "tf_keras": which Keras built the model
    model_class: str | None = None  # a live model's class ("Sequential", "Functional")


def resolve(source) -> ModelSource:
    if hub.is_wanted(source):
        return ModelSource(source, HUB)
    if is_live_model(source):
        return ModelSource(source, LIVE)
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(f"the model {type(source).__name__!r} is neither a Keras model nor a "
                         "name or path; pass a keras.Model, a KerasHub backbone, a model file "
                         "or a registry name (fexport models lists them)")
    if os.path.exists(source):
        return ModelSource(os.fspath(source), FILE)
    return ModelSource(source, REGISTRY, models.get(source))


def is_live_model(source) -> bool:
    """A Keras model object (Keras 3 or tf_keras), rather than a name or a path."""
    return not isinstance(source, (str, bytes, os.PathLike)) and hasattr(source, "layers")


def hub_source(side: hub.ImageSide, given) -> Source:
    """Where a KerasHub model came from: a live object, or a preset (a directory recorded by
    its absolute path, a handle or name as given)."""
    live = hub.is_hub_object(given)
    name = side.name if live or not os.path.isdir(side.name) else os.path.abspath(side.name)
    return Source(name, "memory" if live else "preset", "preset", None, False, "keras",
                  side.family)
