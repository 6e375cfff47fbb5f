"""Discovery: every layer of a model with the feature width each head would give."""

from __future__ import annotations

import math
from pathlib import Path

from fexport import models
from fexport.errors import LayerError

from . import cut, load


def load_for_listing(source, weights="none", input_size=None, unsafe=False):
    """The full model (with its top, so every layer is listed); weights do not change shapes."""
    if Path(source).exists():
        return load.load_file(source, unsafe)[0], None
    spec = models.get(source)
    return load.build_registry_model(spec, weights, True, input_size), spec


def layer_rows(model, spec=None) -> list[dict]:
    recommended = _recommended(model, spec)
    return [_row(index, layer, layer.name in recommended)
            for index, layer in enumerate(model.layers)]


def _recommended(model, spec) -> set[str]:
    names = {spec.feature_layer} if spec and spec.feature_layer else set()
    try:
        names.add(cut.penultimate(model).name)
    except LayerError:
        pass
    return names


def _row(index, layer, recommended) -> dict:
    shape = _shape(layer)
    row = {"index": index, "name": layer.name, "type": type(layer).__name__,
           "output_shape": shape, "recommended": recommended}
    known = shape is not None and all(d is not None for d in shape[1:])
    row["flatten"] = int(math.prod(shape[1:])) if known else None
    pooled = int(shape[-1]) if known and len(shape) >= 3 else None
    row["avg"] = row["max"] = pooled
    return row


def _shape(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError, RuntimeError):
        return None  # a layer used at several places has no single output
    return [None if d is None else int(d) for d in shape]
