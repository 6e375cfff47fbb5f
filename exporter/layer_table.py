"""Discovery: every layer of a model with the feature width each head would give."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from fexport import models
from fexport.errors import LayerError

from . import cut, layouts, load


def load_for_listing(source, weights="none", input_size=None, unsafe=False):
    """The full model (with its top, so every layer is listed); weights do not change shapes."""
    if load.is_live_model(source):
        return load.live_model(source)[0], None
    if Path(source).exists():
        return load.load_file(source, unsafe)[0], None
    spec = models.get(source)
    return load.build_registry_model(spec, weights, True, input_size), spec


@dataclass
class LayerRow:
    """One layer, and the features each head would give at it (None: does not apply)."""

    index: int
    name: str
    type: str
    output_shape: list | None  # batch first; None for a layer used at several places
    recommended: bool
    flatten: int | None
    avg: int | None
    max: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def layer_rows(model, spec=None) -> list[LayerRow]:
    recommended = _recommended(model, spec)
    layout = layouts.of_model(model)
    return [_row(index, layer, layer.name in recommended, layout)
            for index, layer in enumerate(model.layers)]


def _recommended(model, spec) -> set[str]:
    names = {spec.feature_layer} if spec and spec.feature_layer else set()
    try:
        names.add(cut.penultimate(model).name)
    except LayerError:
        pass
    return names


def _row(index, layer, recommended, layout) -> LayerRow:
    shape = _shape(layer)
    known = shape is not None and all(d is not None for d in shape[1:])
    flatten = int(math.prod(shape[1:])) if known else None
    channels_last = layouts.shape_to_channels_last(shape, layout) if known else None
    pooled = int(channels_last[-1]) if known and len(shape) >= 3 else None
    return LayerRow(index, layer.name, type(layer).__name__, shape, recommended, flatten,
                    pooled, pooled)


def _shape(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError, RuntimeError):
        return None  # a layer used at several places has no single output
    return [None if d is None else int(d) for d in shape]
