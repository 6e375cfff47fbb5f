"""Heads turn a layer's output into a feature vector: flatten, avg, max or none.

Each head exists twice on purpose: in TensorFlow (baked into the exported graph) and in numpy
(applied to Keras's own outputs during verification), so verification checks the graph's head
against an independent implementation rather than against itself.
"""

from __future__ import annotations

import math

import numpy as np

from fexport.errors import LayerError, UsageError

HEADS = ("flatten", "avg", "max", "none")
FLATTEN_ORDERS = ("nhwc", "nchw")


def check(head, shape, layer_name):
    """Refuse a head that cannot apply to a layer output of `shape` (batch first)."""
    if head not in HEADS:
        raise UsageError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    rank, spatial = len(shape), shape[1:-1]
    if head in ("avg", "max") and rank < 3:
        raise LayerError(f"layer {layer_name!r} outputs {format_shape(shape)}, already a "
                         f"vector; a {head} pooling head needs a spatial output. Use --head "
                         "flatten (or none), or pick an earlier layer.")
    if head == "flatten" and any(d is None for d in shape[1:]):
        raise LayerError(f"layer {layer_name!r} outputs {format_shape(shape)} with unknown "
                         "height/width, so flatten has no fixed width. Pass --input-size H W, "
                         "or use --head avg / --head max.")
    if head in ("avg", "max") and any(d is None for d in spatial + (shape[-1],)):
        raise LayerError(f"layer {layer_name!r} outputs {format_shape(shape)}; pass "
                         "--input-size H W")


def feature_dim(head, shape) -> int:
    if head in ("avg", "max"):
        return int(shape[-1])
    return int(math.prod(shape[1:]))


def apply_numpy(head, x: np.ndarray, flatten_order="nhwc") -> np.ndarray:
    if head in ("avg", "max"):
        axes = tuple(range(1, x.ndim - 1))
        return x.mean(axis=axes) if head == "avg" else x.max(axis=axes)
    if head == "flatten":
        if flatten_order == "nchw" and x.ndim > 2:
            x = np.moveaxis(x, -1, 1)
        return x.reshape(len(x), -1)
    return x


def apply_tf(head, x, flatten_order="nhwc"):
    import tensorflow as tf

    if head in ("avg", "max"):
        axes = list(range(1, len(x.shape) - 1))
        return tf.reduce_mean(x, axis=axes) if head == "avg" else tf.reduce_max(x, axis=axes)
    if head == "flatten":
        if flatten_order == "nchw" and len(x.shape) > 2:
            x = tf.transpose(x, [0, len(x.shape) - 1, *range(1, len(x.shape) - 1)])
        return tf.reshape(x, [-1, int(math.prod(x.shape[1:]))])
    return x


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
