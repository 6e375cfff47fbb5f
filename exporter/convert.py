"""tf.function -> ONNX with tf2onnx, plus the fixes fexport applies to the result."""

from __future__ import annotations

import logging

import numpy as np
import onnx

from fexport.errors import ConversionError
from fexport.export_options import DEFAULT_OPSET

from . import fixes

BATCH_DIM = "batch"


def to_onnx(function, lifted=None, opset=DEFAULT_OPSET) -> onnx.ModelProto:
    """Convert; weights lifted out as inputs (graph.feature_function) go back in as constants."""
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        with fixes.conversion_fixes():
            constants = fixes.captured_constants(
                function.get_concrete_function(*function.input_signature))
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=opset,
                custom_op_handlers=dict(fixes.CUSTOM_OP_HANDLERS))
    except Exception as exc:  # tf2onnx raises untyped errors from deep inside its handlers
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:400]
        raise ConversionError(f"tf2onnx could not convert the model: {type(exc).__name__}: "
                              f"{first_line}. Try another --opset, or report the model and "
                              "layer to fexport.") from exc
    inline_as_initializers(proto, {**constants, **(lifted or {})})
    check_single_input(proto, function.input_signature[0].name)
    name_batch_dimension(proto)
    return proto


def inline_as_initializers(proto, values) -> None:
    """Graph inputs named in `values` (lifted weights, captured constants) become constants."""
    from onnx import numpy_helper

    used = {name for node in proto.graph.node for name in node.input}
    for value in [v for v in proto.graph.input if v.name in values]:
        proto.graph.input.remove(value)
        if value.name not in used:  # tf2onnx folded it into another constant
            continue
        array = values[value.name]
        array = array if isinstance(array, np.ndarray) else array.numpy()
        proto.graph.initializer.append(numpy_helper.from_array(np.asarray(array), value.name))


def check_single_input(proto, input_name) -> None:
    """A feature model has one input, the images: anything else would be an unfed placeholder."""
    extra = [v.name for v in proto.graph.input if v.name != input_name]
    if extra:
        raise ConversionError(f"internal: the converted graph has inputs {extra[:5]} besides "
                              f"{input_name!r}, which nothing would feed; please report this "
                              "model to fexport")


def name_batch_dimension(proto) -> None:
    """tf2onnx names the dynamic batch 'unk__N'; call it 'batch' in the inputs and outputs."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = BATCH_DIM

