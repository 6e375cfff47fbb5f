"""Heads turn a layer's output into a feature vector.

For spatial outputs (N, H, W, C): flatten, avg, max or none. For the token outputs of a
transformer (N, T, D), whose first `prefix` tokens are the class token and any registers:
cls (the class token), mean (the mean of the patch tokens, without the class and register
tokens), cls+mean (both, concatenated: DINOv2's linear-probe features), flatten or none.
"pooled" is the model's own pooled embedding: the cut is at that output, a vector already.

Each head exists twice on purpose: in TensorFlow (baked into the exported graph) and in numpy
(applied to Keras's own outputs during verification), so verification checks the graph's head
against an independent implementation rather than against itself.
"""

from __future__ import annotations

import math

import numpy as np

from fexport.errors import LayerError, UsageError

HEADS = ("flatten", "avg", "max", "none", "cls", "mean", "cls+mean", "pooled")
TOKEN_HEADS = ("cls", "mean", "cls+mean")
FLATTEN_ORDERS = ("nhwc", "nchw")
NORMALIZATIONS = ("l2",)
# l2: x / max(|x|, EPSILON), as tf.math.l2_normalize computes it (rsqrt of the squared sum
# floored at 1e-12), so an all-zero row stays zero instead of becoming NaN.
L2_EPSILON_SQUARED = 1e-12


def valid_heads(shape, prefix) -> tuple[str, ...]:
    """The heads that apply to an output of `shape` from a model with `prefix` class and
    register tokens (None: not a token model)."""
    if len(shape) == 2:  # a vector: pooled where it is a transformer's own embedding
        return ("flatten", "none", "pooled") if prefix is not None else ("flatten", "none")
    if prefix is not None and len(shape) == 3:
        return ("cls", "mean", "cls+mean", "flatten", "none") if prefix else \
            ("mean", "flatten", "none")
    return ("flatten", "avg", "max", "none")


def check(head, shape, layer_name, prefix=None):
    """Refuse a head that cannot apply to a layer output of `shape` (batch first)."""
    if head not in HEADS:
        raise UsageError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    if prefix is not None or head in (*TOKEN_HEADS, "pooled"):
        return _check_token_head(head, shape, layer_name, prefix)
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


def _check_token_head(head, shape, layer_name, prefix):
    allowed = valid_heads(shape, prefix)
    if head not in allowed:
        kind = "a vector" if len(shape) == 2 else "tokens" if prefix is not None and \
            len(shape) == 3 else "a spatial map"
        raise LayerError(f"--head {head} does not apply to layer {layer_name!r}, which outputs "
                         f"{format_shape(shape)} ({kind}); heads that do: {', '.join(allowed)}")
    if head == "flatten" and any(d is None for d in shape[1:]):
        raise LayerError(f"layer {layer_name!r} outputs {format_shape(shape)} with an unknown "
                         "size, so flatten has no fixed width; pass --input-size H W")


def feature_dim(head, shape) -> int:
    if head in ("avg", "max", "cls", "mean"):
        return int(shape[-1])
    if head == "cls+mean":
        return 2 * int(shape[-1])
    return int(math.prod(shape[1:]))


def apply_numpy(head, x: np.ndarray, flatten_order="nhwc", prefix=0) -> np.ndarray:
    if head in TOKEN_HEADS:
        cls, mean = x[:, 0, :], x[:, prefix:, :].mean(axis=1)
        return cls if head == "cls" else mean if head == "mean" else \
            np.concatenate([cls, mean], axis=1)
    if head in ("avg", "max"):
        axes = tuple(range(1, x.ndim - 1))
        return x.mean(axis=axes) if head == "avg" else x.max(axis=axes)
    if head == "flatten":
        if flatten_order == "nchw" and x.ndim > 2:
            x = np.moveaxis(x, -1, 1)
        return x.reshape(len(x), -1)
    return x


def apply_tf(head, x, flatten_order="nhwc", prefix=0):
    import tensorflow as tf

    if head in TOKEN_HEADS:
        cls, mean = x[:, 0, :], tf.reduce_mean(x[:, prefix:, :], axis=1)
        return cls if head == "cls" else mean if head == "mean" else tf.concat([cls, mean], 1)
    if head in ("avg", "max"):
        axes = list(range(1, len(x.shape) - 1))
        return tf.reduce_mean(x, axis=axes) if head == "avg" else tf.reduce_max(x, axis=axes)
    if head == "flatten":
        if flatten_order == "nchw" and len(x.shape) > 2:
            x = tf.transpose(x, [0, len(x.shape) - 1, *range(1, len(x.shape) - 1)])
        return tf.reshape(x, [-1, int(math.prod(x.shape[1:]))])
    return x


def normalize_numpy(normalize, x: np.ndarray) -> np.ndarray:
    if normalize != "l2":
        return x
    squared = np.sum(np.square(x, dtype=np.float64), axis=1, keepdims=True)
    return (x / np.sqrt(np.maximum(squared, L2_EPSILON_SQUARED))).astype(np.float32)


def normalize_tf(normalize, x):
    import tensorflow as tf

    return tf.math.l2_normalize(x, axis=1, epsilon=L2_EPSILON_SQUARED) if normalize == "l2" \
        else x


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
