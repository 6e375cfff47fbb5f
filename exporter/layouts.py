"""The layouts of a model's image input and of its layer outputs.

A model takes its images as (N, H, W, C), as (N, C, H, W) (channels-first layers, or an input
shaped so), or as (N, H, W) (grayscale without a channel axis), for C in 1 or 3. Inside the
exported graph, and in verification, pixels travel as NHWC (where preprocessing is defined)
and are put into the model's own layout right before it; 4-D layer outputs of a channels-first
model are moved to channels-last right after it, so the heads have one definition. A flatten
head then defaults to the layer's own order, which is what `predict(x).reshape(len(x), -1)`
gives in Keras.

Whether outputs are channels-first is decided once for the model (any layer with
data_format="channels_first"), not per cut layer: a model that mixes both formats and is cut
before its channels-first part would have its outputs transposed; pass --flatten-order and use
an unmixed model there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fexport.errors import UsageError

LAYOUTS = ("nhwc", "nchw", "nhw")
CHANNELS = (1, 3)


@dataclass(frozen=True)
class ModelLayout:
    """How the Keras model takes its images and holds its 4-D outputs."""

    input: str  # "nhwc", "nchw" or "nhw"
    channels_first: bool  # its layers use data_format="channels_first"

    def flatten_order(self) -> str:
        """The flatten order that equals Keras's own reshape of the layer output."""
        return "nchw" if self.channels_first else "nhwc"


def of_model(model) -> ModelLayout:
    """The layout of `model`'s single image input; UsageError for anything else."""
    shape = single_input_shape(model)
    channels_first = _uses_channels_first(model)
    if len(shape) == 3:
        return ModelLayout("nhw", channels_first)
    if channels_first and shape[1] in CHANNELS:
        return ModelLayout("nchw", True)
    if shape[-1] in CHANNELS:
        return ModelLayout("nhwc", channels_first)
    if shape[1] in CHANNELS:
        return ModelLayout("nchw", channels_first)
    raise _unsupported(shape)


def single_input_shape(model) -> tuple:
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    if len(shapes) != 1 or len(shapes[0]) not in (3, 4):
        raise UsageError(f"fexport exports image models with one input of shape (N, H, W, C), "
                         f"(N, C, H, W) or (N, H, W); this model's inputs are {shapes}")
    return tuple(shapes[0])


def _unsupported(shape):
    return UsageError(f"the model's input {shape} has no channel axis of 1 or 3 first or last; "
                      "fexport exports (N, H, W, 1|3), (N, 1|3, H, W) and (N, H, W) images")


def _uses_channels_first(model) -> bool:
    return any(getattr(layer, "data_format", None) == "channels_first"
               for layer in _all_layers(model))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model
            yield from _all_layers(layer)


def image_size(shape, layout) -> tuple:
    """(height, width, channels) of an input `shape` (batch first) in `layout`."""
    if layout == "nhw":
        return shape[1], shape[2], 1
    if layout == "nchw":
        return shape[2], shape[3], shape[1]
    return shape[1], shape[2], shape[3]


def input_shape(height, width, channels, layout) -> tuple:
    """The per-image shape (no batch) of an input in `layout`."""
    if layout == "nhw":
        return (height, width)
    if layout == "nchw":
        return (channels, height, width)
    return (height, width, channels)


def output_to_channels_last(x, layout: ModelLayout, backend=np):
    """A 4-D output of a channels-first model as NHWC; anything else as it is."""
    if layout.channels_first and len(x.shape) == 4:
        return backend.transpose(x, (0, 2, 3, 1))
    return x


def shape_to_channels_last(shape, layout: ModelLayout) -> tuple:
    shape = tuple(shape)
    if layout.channels_first and len(shape) == 4:
        return (shape[0], shape[2], shape[3], shape[1])
    return shape
