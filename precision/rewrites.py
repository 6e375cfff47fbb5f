"""Rewrites of the float model before INT8 quantization, so that the QDQ file runs on INT8
kernels on every backend, with no float work left at its edges. Each keeps the arithmetic: the
same products, summed in another order at most.

A 1x1 convolution with stride 2 (each ResNet stage's first block, the mini-Xception's
shortcuts) reads every second pixel of every second row. OpenVINO's CPU plugin moves that stride
into a subsampling of its own, placed between the DequantizeLinear and the convolution, and then
no longer sees the quantized pattern: those convolutions ran in float (bf16: 6.9 ms of ResNet50's
48 ms at batch 8 on an AMD EPYC). Written as a strided Slice followed by a stride-1 convolution,
the subsampling is quantized like the rest, and OpenVINO runs the six convolutions in INT8.
With the channel fold below, ResNet50 on OpenVINO INT8 went from 168 to 222 images/s at batch
8 (two quiet runs of bench/engines.py; ONNX Runtime's INT8 181 and 180).

Only INT8 variants get it: in float32 the extra Slice cost ResNet50 4% on ONNX Runtime and 10%
on OpenVINO in a quick check (load 0.7, not a suite result), and the export stays what tf2onnx
wrote.
"""

from __future__ import annotations

import numpy as np

from fexport.extras import require

WHOLE = 2**62  # a Slice end past any dimension


def for_int8(model) -> bool:
    """Every rewrite below, in place; whether any applied."""
    folded = channel_order_into_first_conv(model)
    return strided_pointwise_as_slices(model) > 0 or folded


def strided_pointwise_as_slices(model) -> int:
    """Rewrite, in place, every 1x1 stride-2 Conv without padding as Slice + stride-1 Conv;
    returns how many. The same pixels meet the same weights: the features are unchanged."""
    nodes, rewritten = [], 0
    for node in model.graph.node:
        if not _strided_pointwise(node):
            nodes.append(node)
            continue
        rewritten += 1
        nodes += _as_slice_and_conv(model.graph, node, f"fexport_subsample_{rewritten}")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def channel_order_into_first_conv(model) -> bool:
    """Fold the caffe preprocessing's RGB->BGR Gather into the first convolution, in place:
    Gather(input) -> Sub(mean) -> Transpose -> Conv becomes Sub(mean, reordered) -> Transpose
    -> Conv(input channels reordered). The same products are summed, in another order only.
    Measured on OpenVINO: the Gather took 0.87 ms of ResNet50's 36.5 ms at batch 8, in float."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    chain = _flip_chain(model.graph)
    if chain is None:
        return False
    gather, sub, conv, order = chain
    initializers = {t.name: t for t in model.graph.initializer}
    mean = numpy_helper.to_array(initializers[sub.input[1]])
    kernel = numpy_helper.to_array(initializers[conv.input[1]])
    reordered_mean, reordered_kernel = np.empty_like(mean), np.empty_like(kernel)
    reordered_mean[order], reordered_kernel[:, order] = mean, kernel
    for node, index, values in ((sub, 1, reordered_mean), (conv, 1, reordered_kernel)):
        name = f"{node.input[index]}_fexport_channel_order"
        model.graph.initializer.append(numpy_helper.from_array(values, name))
        node.input[index] = name
    sub.input[0] = gather.input[0]
    model.graph.node.remove(gather)
    _drop_unused_initializers(model.graph)
    return True


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _flip_chain(graph):
    """(gather, sub, conv, channel order) when the graph starts so; else None."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    initializers = {t.name: t for t in graph.initializer}
    first = [n for n in graph.node if n.op_type == "Gather" and graph.input
             and n.input[0] == graph.input[0].name and n.input[1] in initializers]
    if len(first) != 1 or _attributes(first[0]).get("axis") not in (-1, 3):
        return None
    gather = first[0]
    sub = _only_consumer(graph, gather.output[0], "Sub")
    transpose = sub and _only_consumer(graph, sub.output[0], "Transpose")
    conv = transpose and _only_consumer(graph, transpose.output[0], "Conv")
    if not conv or list(_attributes(transpose).get("perm", [])) != [0, 3, 1, 2] \
            or sub.input[1] not in initializers or conv.input[1] not in initializers:
        return None
    order = numpy_helper.to_array(initializers[gather.input[1]])
    mean = numpy_helper.to_array(initializers[sub.input[1]])
    if mean.shape != order.shape or sorted(order.tolist()) != list(range(len(order))):
        return None
    return gather, sub, conv, order


def _only_consumer(graph, tensor, op_type):
    users = [n for n in graph.node if tensor in n.input]
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _attributes(node) -> dict:
    helper = require("onnx.helper", "INT8 quantization")
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _strided_pointwise(node) -> bool:
    if node.op_type != "Conv":
        return False
    attributes = _attributes(node)
    return (list(attributes.get("kernel_shape", [])) == [1, 1]
            and list(attributes.get("strides", [])) == [2, 2]
            and not any(attributes.get("pads", [0])))


def _as_slice_and_conv(graph, conv, name) -> list:
    helper = require("onnx.helper", "INT8 quantization")
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    bounds = {"starts": [0, 0], "ends": [WHOLE, WHOLE], "axes": [2, 3], "steps": [2, 2]}
    for key, values in bounds.items():
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64),
                                                         f"{name}_{key}"))
    subsampled = f"{name}_output"
    slice_node = helper.make_node("Slice", [conv.input[0], *(f"{name}_{k}" for k in bounds)],
                                  [subsampled], name=name)
    attributes = {**_attributes(conv), "strides": [1, 1]}
    new_conv = helper.make_node("Conv", [subsampled, *conv.input[1:]], list(conv.output),
                                name=conv.name, **attributes)
    return [slice_node, new_conv]
