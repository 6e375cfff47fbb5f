"""Floating-point operations per image of an ONNX model: its convolutions and matrix products.

Multiply-adds count as 2 FLOPs, as in the papers that give VGG16 ~30.7 GFLOPs at 224x224;
element-wise ops (activations, normalization, pooling) are left out: they are a few percent of
the total in these networks and memory-bound anyway. Shapes come from running the model once on
one image with every counted tensor exposed as an output: tf2onnx's reshapes leave some shapes
unknown to static inference (ConvNeXt's dense layers). Needs the onnx package.
"""

from __future__ import annotations

import math


def flops_per_image(path) -> int:
    import onnx

    model = onnx.load(str(path))
    counted = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    shapes.update(_run_shapes(model, {n.input[0] for n in counted} | {n.output[0]
                                                                        for n in counted}))
    return sum(_node_flops(node, shapes) for node in counted)


def _run_shapes(model, names) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    names = sorted(names - {t.name for t in model.graph.initializer})
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in value.shape]
        feed[value.name] = np.zeros(shape, np.uint8 if "uint8" in value.type else np.float32)
    return {n: list(a.shape) for n, a in zip(names, session.run(names, feed))}


def _node_flops(node, shapes) -> int:
    if node.op_type == "Conv":
        weight, out = shapes.get(node.input[1]), shapes.get(node.output[0])
        if weight and out:  # weight (Cout, Cin/groups, kh, kw): each output sums Cin/g*kh*kw
            return 2 * math.prod(out) * math.prod(weight[1:])
    if node.op_type in ("MatMul", "Gemm"):
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if a and out:
            k = a[0] if node.op_type == "Gemm" and _attribute(node, "transA") else a[-1]
            return 2 * math.prod(out) * k
    return 0


def _attribute(node, name) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)
