"""The exported computation as one tf.function: pixels in, features out.

    images (uint8|float32, NHWC|NCHW) -> float32 NHWC -> preprocessing mode -> cut model
        -> head per layer -> concatenated features

The preprocessing constants come from fexport.models.preprocessing, the same numbers the runtime
uses and Keras's `preprocess_input` applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from fexport.models import preprocessing as pp
from fexport.runtime.files import (
    images as pixels,  # the runtime's layout rules, so both sides agree
)

from . import heads, layouts


@dataclass(frozen=True)
class Steps:
    """What the graph does around the cut model: preprocessing before it, heads after it."""

    mode: str  # a preprocessing mode (fexport.models.preprocessing.MODES)
    scale: list | None  # scale_offset's numbers (one, or one per channel)
    offset: list | None
    head: str
    flatten_order: str
    prefix_tokens: int = 0  # class + register tokens of token outputs (the token heads)
    normalize: str | None = None  # "l2": unit-length feature rows


def preprocess_tf(mode, x, scale=None, offset=None):
    if mode == "caffe":
        # RGB -> BGR as a Gather of the channels, not tf.reverse: tf2onnx turns the reverse into
        # ReverseSequence, which OpenVINO's CPU plugin runs with a reference kernel (2.9 ms of
        # ResNet50's 48 ms at batch 8); the Gather gives the same values, and ResNet50's
        # int8-bf16 file ran 1.13x faster with it (ONNX Runtime: no change).
        return tf.gather(x, [2, 1, 0], axis=-1) - tf.constant(pp.CAFFE_BGR_MEAN, tf.float32)
    if mode == "tf":
        return x / pp.TF_SCALE - pp.TF_OFFSET
    if mode == "torch":
        x = x / pp.TORCH_SCALE - tf.constant(pp.TORCH_RGB_MEAN, tf.float32)
        return x / tf.constant(pp.TORCH_RGB_STD, tf.float32)
    if mode == "scale_offset":  # KerasHub's ImageConverter: x * scale + offset
        x = x * tf.constant(scale, tf.float32) if scale else x
        return x + tf.constant(offset, tf.float32) if offset else x
    return x


# Weights enter the converted graph as inputs, not frozen constants, when they are large: tf2onnx
# copies every frozen constant many times while converting (peaks near 25x the frozen bytes).
# Lifted are every weight above LIFT_WEIGHTS_OVER_BYTES (VGG16's 411 MB fc1 took the export of
# `--layer penultimate` past 24 GiB; lifted, it peaks at 6 GiB), then the largest others until
# at most FROZEN_BUDGET_BYTES stay frozen (ConvNeXtXLarge, 1.4 GB of 16 MiB and smaller weights,
# was killed above 24 GiB; within the budget it peaks at 16 GiB). Small and mid-size models keep
# their weights frozen, so tf2onnx folds them into the ops. They become ONNX initializers again
# right after conversion (convert.inline_as_initializers).
LIFT_WEIGHTS_OVER_BYTES = 16 * 2**20
FROZEN_BUDGET_BYTES = 384 * 2**20
LIFTED_PREFIX = "fexport_weight_"


def feature_function(cut_model, spec, layout, steps: Steps, output_name, lift=False):
    """(tf.function over `spec`'s input returning the features, {input name: lifted weight}).

    `layout` (exporter/layouts.py) says how the Keras model takes its images and holds its
    outputs; the ONNX input is in `spec.layout`, which may differ."""
    dtype = tf.uint8 if spec.dtype == "uint8" else tf.float32
    lifted = _liftable_weights(cut_model) if lift else {}
    signature = [tf.TensorSpec(spec.shape(spec.batch), dtype, name=spec.name)]
    signature += [tf.TensorSpec(v.shape, v.dtype, name=name) for name, v in lifted.items()]

    @tf.function(input_signature=signature)
    def features(images, *weights):
        x = pixels.to_nhwc(tf.cast(images, tf.float32), spec.layout, tf)
        x = preprocess_tf(steps.mode, x, steps.scale, steps.offset)
        outputs = _call(cut_model, pixels.from_nhwc(x, layout.input, tf),
                        list(lifted.values()), weights)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        parts = [heads.apply_tf(steps.head, layouts.output_to_channels_last(out, layout, tf),
                                steps.flatten_order, steps.prefix_tokens) for out in outputs]
        joined = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
        joined = heads.normalize_tf(steps.normalize, joined)
        return {output_name: tf.identity(joined, name=output_name)}

    return features, lifted


def _liftable_weights(model) -> dict:
    """Large weights of a Keras 3 model (tf_keras models have no stateless_call: none)."""
    if not hasattr(model, "stateless_call"):
        return {}
    weights = sorted((v for v in model.variables if v.dtype == "float32"),
                     key=lambda v: -math.prod(v.shape))
    frozen = sum(math.prod(v.shape) * 4 for v in weights)
    lifted = []
    for v in weights:
        size = math.prod(v.shape) * 4
        if size <= LIFT_WEIGHTS_OVER_BYTES and frozen <= FROZEN_BUDGET_BYTES:
            break
        lifted.append(v)
        frozen -= size
    return {f"{LIFTED_PREFIX}{i}": v for i, v in enumerate(lifted)}


def _call(model, x, lifted_variables, values):
    if not lifted_variables:
        return model(x, training=False)
    replace = {id(v): value for v, value in zip(lifted_variables, values)}
    trainable = [replace.get(id(v), v.value) for v in model.trainable_variables]
    non_trainable = [replace.get(id(v), v.value) for v in model.non_trainable_variables]
    outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
    return outputs
