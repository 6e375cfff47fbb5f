"""INT8 by NNCF's post-training quantization, on the same pre-processed ONNX file and the same
calibration images as ONNX Runtime's `quantize_static`.

Two methods:
- "nncf": `nncf.quantize` with full bias correction and min-max activation ranges;
- "nncf-accuracy": `nncf.quantize_with_accuracy_control`, which puts back in float, one by
  one, the operations whose quantization costs the most, until the min cosine to float32 on
  the calibration images reaches comparison.calibration_target (0.995 for the gate 0.99). It
  never sees the
  held-out images: they stay for the judge (quantize.judge), as for every other candidate.

Why these options, measured on a 2-core AMD EPYC (AVX2), 32 calibration photos, min cosine to
float32 on 32 others, ONNX Runtime: the VWW MobileNet (activation_26 avg) gave 0.942 with
NNCF's defaults, 0.944 with full bias correction, 0.987 with min-max ranges as well (NNCF's
default ranges clip the rare large activations of photos the calibration did not see), 0.989
with the last three nodes ignored as well (too little to be a candidate of its own), 0.992
with accuracy control. mini-Xception (add_4 avg): 0.976 and 0.996.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from fexport import comparison
from fexport.extras import require
from fexport.runtime.backends import int8_backend, open_backend

METHODS = ("nncf", "nncf-accuracy")
# Operations whose weights NNCF quantizes: one without a DequantizeLinear weight stayed float.
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def quantize(prepared, candidate, options, reference, inputs: list[dict]) -> None:
    """Write `candidate`, the INT8 QDQ form of the pre-processed float32 file `prepared`,
    calibrated on `inputs` (the engine inputs of the calibration images, one per item)."""
    nncf, onnx = require("nncf", "NNCF quantization"), require("onnx", "NNCF quantization")
    with _quiet():
        model = _quantize(nncf, onnx.load(str(prepared)), inputs, options, reference)
    onnx.save(model, str(candidate))


def _quantize(nncf, model, inputs, options, reference):
    dataset = nncf.Dataset(inputs)
    settings = {"subset_size": len(inputs), "fast_bias_correction": False,
                "ignored_scope": _ignored(nncf, options.nodes_to_exclude)}
    if options.method == "nncf":
        return nncf.quantize(model, dataset, **settings, advanced_parameters=_advanced())
    expected = reference.extract(options.calibration_images[:options.samples])
    metric = _MinCosine(expected, inputs, tuned_on(options))
    return nncf.quantize_with_accuracy_control(
        model, dataset, dataset, metric,
        max_drop=1.0 - comparison.calibration_target(options.min_cosine),
        drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=_advanced(),
        **settings)


def _advanced():
    advanced = require("nncf.quantization.advanced_parameters", "NNCF quantization")
    ranges = require("nncf.quantization.range_estimator", "NNCF quantization")
    # Per-tensor activations: NNCF's CPU target quantizes a depthwise convolution's input per
    # channel, which OpenVINO runs and ONNX Runtime refuses (QLinearConv takes one zero point).
    return advanced.AdvancedQuantizationParameters(
        activations_range_estimator_params=ranges.RangeEstimatorParametersSet.MINMAX,
        activations_quantization_params=advanced.QuantizationParameters(per_channel=False))


def _ignored(nncf, names):
    return nncf.IgnoredScope(names=list(names), validate=False) if names else None


def tuned_on(options) -> str:
    """The backend accuracy control measures on: the one that will run the file. The kernels
    differ: the same mini-Xception file measured 0.9934 on ONNX Runtime, 0.9879 on OpenVINO."""
    return options.tuned_on or int8_backend()


class _MinCosine:
    """Accuracy control's metric: the min cosine to float32 on the calibration images, of the
    model NNCF hands over (an ONNX ModelProto), run on `backend`'s CPU kernels as the runtime
    opens a file."""

    def __init__(self, expected, inputs, backend):
        self.expected, self.inputs, self.backend = expected, inputs, backend

    def __call__(self, model, _dataset) -> float:  # the dataset: NNCF's wrapper of `inputs`
        onnx = require("onnx", "NNCF accuracy control")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "candidate.onnx"
            onnx.save(model, str(path))
            engine = open_backend(path, None, self.backend, "cpu", "fp32")
            features = np.concatenate([engine.run(next(iter(item.values())))
                                       for item in self.inputs])
        return float(comparison.row_cosines(self.expected, features).min())


def float_nodes(candidate) -> list[str]:
    """The weighted operations that NNCF left in float32 (accuracy control put them back)."""
    graph = require("onnx", "NNCF quantization").load(str(candidate)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in graph.node if n.op_type in WEIGHTED and len(n.input) > 1
            and n.input[1] not in dequantized]


@contextlib.contextmanager
def _quiet():
    """NNCF reports progress on stdout and in its logger; library code never prints."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
