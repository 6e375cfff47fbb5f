"""Which nodes of an INT8 (QDQ) model lose the most to quantization.

ONNX Runtime's QDQ debugging helpers run the float model and the QDQ model on the same images
and save every activation, before and after each QuantizeLinear/DequantizeLinear pair. A
tensor's signal-to-quantization-noise ratio (dB) between those two says how much its own
quantization loses; a node scores the worst (lowest) ratio among its quantized inputs and
outputs. Kept in float, the worst nodes remove the largest local errors first.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from fexport.extras import require

# The calibration images the measurement runs on: activations of every tensor are kept in
# memory, so a few images, not all of them.
IMAGES = 8


def rank_nodes(prepared, qdq_file, reader, workdir) -> list[tuple[str, float]]:
    """(name, signal-to-quantization-noise ratio in dB) of the prepared float model's nodes,
    the most sensitive (lowest ratio) first."""
    debug = require("onnxruntime.quantization.qdq_loss_debug", "the sensitive-node search")
    reader.all_paths = reader.all_paths[:IMAGES]
    activations = {}
    for label, model in (("float", prepared), ("qdq", qdq_file)):
        augmented = str(Path(workdir) / f"{label}_augmented.onnx")
        debug.modify_model_output_intermediate_tensors(str(model), augmented)
        reader.rewind()
        with contextlib.redirect_stdout(io.StringIO()):
            activations[label] = debug.collect_activations(augmented, reader)
    matched = debug.create_activation_matching(activations["qdq"], activations["float"])
    errors = debug.compute_activation_error(matched)
    return _by_score(prepared, {name: e["qdq_err"] for name, e in errors.items()})


def _by_score(prepared, noise_ratio) -> list[tuple[str, float]]:
    graph = require("onnx", "the sensitive-node search").load(str(prepared)).graph
    scores = {}
    for node in graph.node:
        ratios = [noise_ratio[t] for t in (*node.input, *node.output) if t in noise_ratio]
        if node.name and ratios:
            scores[node.name] = min(ratios)
    return sorted(scores.items(), key=lambda item: item[1])
