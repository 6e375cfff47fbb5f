"""The machine's measured FP32 limit: the best rate of a large square matrix product.

Measured two ways, numpy (its BLAS) and ONNX Runtime's own MatMul kernel (MLAS), because a
model's runtime can reach no more than what its kernels get from the cores. 2 x N^3 FLOPs each.
"""

from __future__ import annotations

import numpy as np

from fexport.runtime.timing import best_of

SIZE = 2048
REPEATS = 7  # the best of a few: the limit, not the average under interference


def rates(size=SIZE, repeats=REPEATS) -> dict:
    a, b = (np.random.default_rng(i).standard_normal((size, size), np.float32) for i in (0, 1))
    numpy_best = best_of(lambda: a @ b, repeats)
    session = _matmul_session(size)
    ort_best = best_of(lambda: session.run(None, {"a": a, "b": b}), repeats)
    gflop = 2 * size**3 / 1e9
    return {"size": size, "numpy": gflop / numpy_best, "onnxruntime": gflop / ort_best,
            "best": gflop / min(numpy_best, ort_best)}




def _matmul_session(size):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"]
    output = helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
