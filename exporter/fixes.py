"""Gaps between Keras 3, tf2onnx 1.17 and ONNX Runtime, closed here and nowhere else.

Each fix is named for the problem it solves and says which models need it. They apply only while
fexport traces and converts the feature function; the Keras reference that verification runs is
left untouched, so every fix is checked against the unpatched model.
"""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def grouped_convolutions_without_xla():
    """Trace grouped convolutions (ConvNeXt's depthwise Conv2D(groups=C)) as plain Conv2D ops.

    Keras 3's TensorFlow backend runs a grouped convolution inside a tf.function with
    jit_compile=True, because TensorFlow's CPU kernel cannot execute one. tf2onnx does not inline
    XLA-compiled functions, so the converted graph kept a StatefulPartitionedCall node and ONNX
    Runtime rejected it as an invalid graph. Traced (never executed by TensorFlow), the plain
    Conv2D op carries the grouped filter shape, which tf2onnx turns into an ONNX Conv with
    group = input channels / filter input channels.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        data_format = nn.backend.standardize_data_format(data_format)
        channels = inputs.shape[-1] if data_format == "channels_last" else inputs.shape[1]
        if len(inputs.shape) != 4 or channels == kernel.shape[-2]:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                 data_format=nn._convert_data_format(data_format, 4),
                                 dilations=dilation_rate)

    nn.conv = conv
    try:
        yield
    finally:
        nn.conv = original


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """Erfc(x) = 1 - Erf(x). Keras's exact GELU (ConvNeXt) is tf.nn.gelu, which uses Erfc; ONNX
    has Erf (opset 9) but no Erfc and tf2onnx 1.17 has no handler for it. In GELU the term is
    0.5 * x * erfc(-x / sqrt 2): where 1 - erf(.) loses digits, near 0, x is tiny too, so the
    absolute error stays below 1e-7 of the activations' scale."""
    from tf2onnx import utils

    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1.0, np.float32))
    node.type = "Sub"
    node.domain = ""
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def captured_constants(concrete_function) -> dict:
    """{graph input name: value} of the eager tensors a traced model captured (ConvNeXt's
    Normalization mean and variance). tf2onnx freezes captured variables but leaves captured
    tensors as graph inputs nobody feeds; convert.py puts them back as initializers."""
    import tensorflow as tf

    return {internal.name: external.numpy()
            for external, internal in concrete_function.graph.captures
            if external.dtype != tf.resource and hasattr(external, "numpy")}


# tf2onnx's custom_op_handlers: {TensorFlow op: (handler, extra args)}
CUSTOM_OP_HANDLERS = {"Erfc": (_erfc_as_one_minus_erf, [])}


@contextlib.contextmanager
def conversion_fixes():
    """Everything fexport patches while tracing and converting (see each fix for why)."""
    with grouped_convolutions_without_xla():
        yield
