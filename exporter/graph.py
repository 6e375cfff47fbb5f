"""The exported computation as one tf.function: pixels in, features out.

    images (uint8|float32, NHWC|NCHW) -> float32 NHWC -> preprocessing mode -> cut model
        -> head per layer -> concatenated features

The preprocessing constants come from fexport.models.preprocessing, the same numbers the runtime
uses and Keras's `preprocess_input` applies.
"""

from __future__ import annotations

import tensorflow as tf

from fexport.models import preprocessing as pp

from . import heads


def preprocess_tf(mode, x):
    if mode == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(pp.CAFFE_BGR_MEAN, tf.float32)
    if mode == "tf":
        return x / pp.TF_SCALE - pp.TF_OFFSET
    if mode == "torch":
        x = x / pp.TORCH_SCALE - tf.constant(pp.TORCH_RGB_MEAN, tf.float32)
        return x / tf.constant(pp.TORCH_RGB_STD, tf.float32)
    return x


def feature_function(cut_model, spec, mode, head, flatten_order, output_name):
    """A tf.function over `spec`'s input whose single output is the feature tensor."""
    dtype = tf.uint8 if spec.dtype == "uint8" else tf.float32
    signature = [tf.TensorSpec(spec.shape(spec.batch), dtype, name=spec.name)]

    @tf.function(input_signature=signature)
    def features(images):
        x = tf.cast(images, tf.float32)
        if spec.layout == "nchw":
            x = tf.transpose(x, [0, 2, 3, 1])
        outputs = cut_model(preprocess_tf(mode, x), training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        parts = [heads.apply_tf(head, out, flatten_order) for out in outputs]
        joined = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
        return {output_name: tf.identity(joined, name=output_name)}

    return features
