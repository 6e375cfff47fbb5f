"""Discovery: every layer of a model with the feature width each head would give."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fexport.errors import LayerError

from . import cut, hub, layouts, load, sources


def load_for_listing(source, weights="none", input_size=None, unsafe=False):
    """The full model (with its top, so every layer is listed); weights do not change shapes.
    For a KerasHub source, its flat image side (exporter/hub.py) in place of the spec."""
    given = sources.resolve(source)
    if given.kind == sources.HUB:
        side = hub.load(source)
        return side.model, side
    if given.kind == sources.LIVE:
        return load.live_model(source)[0], None
    if given.kind == sources.FILE:
        return load.load_file(given.given, unsafe)[0], None
    return load.build_registry_model(given.spec, weights, True, input_size), given.spec


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
    point: str | None = None  # a KerasHub cut point naming this layer ("block:3", "P4")
    cls: int | None = None  # the token heads' widths (transformer token outputs)
    mean: int | None = None
    cls_mean: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def layer_rows(model, spec=None) -> list[LayerRow]:
    """One row per layer; `spec` is the registry's ModelSpec, or a KerasHub ImageSide."""
    if isinstance(spec, hub.ImageSide):
        return _hub_rows(model, spec)
    recommended = _recommended(model, spec)
    layout = layouts.of_model(model)
    return [_row(index, layer, layer.name in recommended, layout)
            for index, layer in enumerate(model.layers)]


def _hub_rows(model, side) -> list[LayerRow]:
    layout, recommended = layouts.of_model(model), {side.tokens_layer, side.pooled_layer}
    points = {}
    for point, name in side.points.items():  # the first (block:K) names each layer
        points.setdefault(name, point)
    rows = []
    for index, layer in enumerate(model.layers):
        row = _row(index, layer, layer.name in recommended, layout)
        row.point = points.get(layer.name)
        if side.prefix_tokens is not None and row.output_shape and len(row.output_shape) == 3:
            width = row.output_shape[-1]
            row.avg = row.max = None  # token outputs take mean, not avg/max over all tokens
            row.mean = width
            row.cls, row.cls_mean = (width, 2 * width) if side.prefix_tokens else (None, None)
        rows.append(row)
    if side.prefix_tokens is None and not (side.tokens_layer or side.pooled_layer):
        rows[-1].recommended = True  # a CNN backbone: its output
    return rows


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
