"""Which nodes of an INT8 (QDQ) model to keep in float: ranked cheaply, then measured.

ONNX Runtime's QDQ debugging helpers run the float model and the QDQ model on the same images
and save every activation, before and after each QuantizeLinear/DequantizeLinear pair. A
tensor's signal-to-quantization-noise ratio (dB) between those two says how much its own
quantization loses; a node scores the worst (lowest) ratio among its quantized inputs and
outputs. That ranking only orders the tries: a local error is not what the features lose
(issue #25 saw the cosine fall from 0.959 to 0.938 as 1 to 16 top-ranked nodes were kept in
float at once), so `search` measures each node's gain before it keeps it.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fexport.extras import require

# The calibration images the measurement runs on: activations of every tensor are kept in
# memory, so a few images, not all of them.
IMAGES = 8
# Nodes tried, worst-ranked first; each try is one quantization and one pass over the
# calibration images.
TRIES = 8


@dataclass
class Step:
    node: str
    before: float  # min cosine to float32 on the calibration images, the nodes kept so far
    after: float  # with this node in float as well
    kept: bool  # only a node that raises the cosine stays in float


@dataclass
class SearchResult:
    start: float  # min cosine with nothing kept in float
    target: float
    steps: list[Step] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return [step.node for step in self.steps if step.kept]

    @property
    def reached(self) -> float:
        return max([self.start] + [step.after for step in self.steps if step.kept])

    def lines(self) -> list[str]:
        tries = "; ".join(f"{s.node} {s.after - s.before:+.4f}{' kept' if s.kept else ''}"
                          for s in self.steps)
        return [f"sensitive-node search, min cosine on the calibration images: "
                f"{self.start:.4f} to {self.reached:.4f} (target {self.target:.4f}), "
                f"{len(self.kept)} of {len(self.steps)} nodes tried kept in float: {tries}"]


def search(ranked, measure, target, tries=TRIES) -> SearchResult:
    """Keep in float, one at a time and worst-ranked first, each of the first `tries` nodes
    whose addition raises `measure(nodes)` (min cosine); stop once `target` is reached. So
    keeping more nodes never measures worse than keeping fewer."""
    result = SearchResult(measure([]), target)
    for node in ranked[:tries]:
        if result.reached >= target:
            break
        before = result.reached
        after = measure(result.kept + [node])
        result.steps.append(Step(node, before, after, after > before))
    return result


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
    return _by_score(prepared, {name: _rounding_sqnr(m) for name, m in matched.items()
                                if "pre_qdq" in m and "post_qdq" in m})


def _rounding_sqnr(match) -> float:
    """Signal-to-noise (dB) of one tensor's quantization, the clipping to its range taken out.

    ONNX Runtime's own `qdq_err` compares the tensor before QuantizeLinear with the one after
    DequantizeLinear. Where the quantizer folds a Relu or Relu6 into that pair (the range then
    starts at 0), the tensor before it is the convolution's output, negatives and all, so the
    activation itself counted as noise: 1.8 to 2.2 dB for every Relu of the VWW MobileNet (minmax
    ranges, which cover every calibration value), as issue #25 saw 0.2 dB for an ImageNet
    MobileNet's last Relu6 and the Mean after it. Clipped to the range the dequantized values
    span, what is left is the rounding: 34 to 191 dB on the VWW MobileNet, 29 to 182 dB on
    mini-Xception, and the ranking then starts with nodes that NNCF's accuracy control also
    put back in float (conv2d_3 of the VWW MobileNet).
    """
    before, after = np.concatenate(match["pre_qdq"]), np.concatenate(match["post_qdq"])
    clipped = np.clip(before, after.min(), after.max())
    noise = max(float(np.linalg.norm(clipped - after)), np.finfo(np.float32).eps)
    return 20 * math.log10(max(float(np.linalg.norm(clipped)), np.finfo(np.float32).eps) / noise)


def _by_score(prepared, noise_ratio) -> list[tuple[str, float]]:
    graph = require("onnx", "the sensitive-node search").load(str(prepared)).graph
    scores = {}
    for node in graph.node:
        ratios = [noise_ratio[t] for t in (*node.input, *node.output) if t in noise_ratio]
        if node.name and ratios:
            scores[node.name] = min(ratios)
    return sorted(scores.items(), key=lambda item: item[1])
