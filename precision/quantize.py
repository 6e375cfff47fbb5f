"""Reduced-precision variants of an exported model: static INT8 (QDQ) for CPUs, FP16 for GPUs.

Both start from an fexport FP32 file and keep its contract (same input, same features), adding
`precision` and the quality report measured against the FP32 model on images that were not used
for calibration (precision/quality.py). ONNX Runtime's own quantization tools do the work:
`quant_pre_process` (shape inference and graph optimization it recommends before quantizing),
then `quantize_static` with per-channel INT8 weights and calibrated UINT8 activations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fexport import comparison
from fexport.errors import UsageError, VerificationError
from fexport.extras import require
from fexport.reports import QualityReport
from fexport.runtime import backends, host
from fexport.runtime.contract import to_model_input, write_onnx
from fexport.runtime.extractor import FeatureExtractor
from fexport.runtime.files import images

from . import imagesets, nncf_int8, quality, rewrites

# ONNX Runtime's calibration methods, then NNCF's (precision/nncf_int8.py).
METHODS = ("minmax", "entropy", "percentile", *nncf_int8.METHODS)
PRECISIONS = ("int8", "fp16", "bf16", "int8-bf16")  # int8-bf16: float parts in bf16


@dataclass
class QuantizeOptions:
    model: str  # the FP32 fexport ONNX file
    output: str
    precision: str = "int8"
    calibration_images: list = field(default_factory=list)
    samples: int = 64
    # Percentile clips the rare extreme activations minmax must cover: measured on real photos,
    # min cosine to float32 0.991 vs 0.988 for the pretrained mini-Xception, and equal or better
    # for VGG16 and ResNet50.
    method: str = "percentile"
    evaluation_images: list = field(default_factory=list)
    labels: list | None = None  # one per evaluation image, for the linear-probe accuracy
    min_cosine: float = comparison.VARIANT_MIN_COSINE
    nodes_to_exclude: list = field(default_factory=list)  # INT8: nodes kept in float
    # nncf-accuracy: the backend its accuracy control measures on; None: the one INT8 files
    # open on here (backends.int8_backend), which is where the judge runs them.
    tuned_on: str | None = None


def quantize(options: QuantizeOptions) -> QualityReport:
    """Write the reduced-precision model; its quality report. Raises VerificationError (after
    writing, so the file can be inspected) when min cosine falls below the threshold."""
    _check(options)
    reference = float32_reference(options.model)
    with tempfile.TemporaryDirectory() as workdir:
        candidate = build(options, reference, workdir)
        report = judge(candidate, reference, options)
        _save(candidate, reference.contract, report, options.output)
    if not report.passed:
        raise VerificationError(quality.failure_message(report, options.output), report)
    return report


def float32_reference(model) -> FeatureExtractor:
    """The float32 export every variant is made from and judged against."""
    reference = FeatureExtractor(model, device="cpu")
    if reference.contract.precision != "float32" or reference.contract.backend:
        raise UsageError(f"{model} is a {reference.contract.precision} variant; variants are "
                         "made from the float32 export: pass that file")
    return reference


def build(options, reference, workdir) -> Path:
    """The candidate file in `workdir`, its contract naming the variant's precision."""
    candidate = Path(workdir) / f"candidate-{len(list(Path(workdir).iterdir()))}.onnx"
    _convert(options, reference, candidate, workdir)
    _mark(candidate, reference.contract, options.precision)
    return candidate


def judge(candidate, reference, options, backend="auto", device=None) -> QualityReport:
    """The quality report of `candidate` against float32, on the backend (and `device`, by
    default judging_device's) that runs it (the one path for quantize, convert and
    optimize)."""
    judged = FeatureExtractor(candidate, device=device or judging_device(options.precision),
                              backend=backend)
    report = quality.evaluate(reference, judged, options.evaluation_images, options.labels,
                              options.min_cosine)
    return dataclasses.replace(
        report, precision=options.precision, method=_method_label(options),
        calibration_samples=_samples(options), measured_on=str(judged.ran),
        reference=str(reference.ran), kept_float=tuple(_kept_float(candidate, options)))


def _kept_float(candidate, options) -> list[str]:
    """The nodes asked to stay float, or those that NNCF's accuracy control put back."""
    if options.method == "nncf-accuracy" and options.precision.startswith("int8"):
        return nncf_int8.float_nodes(candidate)
    return list(options.nodes_to_exclude)


def judging_device(precision) -> str:
    """FP16 is judged on CUDA where there is one: ONNX Runtime's CPU provider has few float16
    kernels and runs the rest in float32 behind inserted casts, which would judge a file more
    exact than the GPU runs it. The other variants are CPU variants."""
    return "cuda" if precision == "fp16" and backends.cuda_available() else "cpu"


def _check(options) -> None:
    if options.precision not in PRECISIONS:
        raise UsageError(f"precision {options.precision!r}: expected one of {PRECISIONS}")
    if options.method not in METHODS:
        raise UsageError(f"--method {options.method!r}: expected one of {', '.join(METHODS)}")
    calibrating = len(options.calibration_images[:options.samples])
    imagesets.check_counts(calibrating, len(options.evaluation_images), options.precision,
                           f"{calibrating} calibration and {len(options.evaluation_images)} "
                           "evaluation images given")
    overlap = set(map(str, options.calibration_images[:options.samples])) & set(
        map(str, options.evaluation_images))
    if overlap:
        raise UsageError(f"{len(overlap)} images are both calibration and evaluation images "
                         f"(e.g. {sorted(overlap)[0]}); evaluate on images the calibration did "
                         "not see")


def _convert(options, reference, candidate, workdir) -> None:
    if options.precision == "fp16":
        _fp16(options.model, candidate)
    elif options.precision == "bf16":
        shutil.copyfile(options.model, candidate)  # the float32 graph: OpenVINO computes bf16
    else:  # int8, int8-bf16: the same QDQ file; the contract says how its float parts run
        _int8(options, reference, candidate, workdir)


def _pre_process(model, prepared) -> None:
    """ONNX Runtime's recommended pre-processing. Its symbolic shape inference gives up on the
    dynamic reshapes of transformers converted from TensorFlow (KerasHub's DINOv2 and ViT:
    "Incomplete symbolic shape inference"); ONNX's own shape inference and the graph
    optimization then still run, which is what the quantizer needs."""
    quant_pre_process = require("onnxruntime.quantization.shape_inference",
                                "INT8 quantization").quant_pre_process
    model, prepared = os.path.abspath(model), os.path.abspath(prepared)
    # When it gives up, ORT's symbolic shape inference dumps sym_shape_infer_temp.onnx and its
    # weights (UUID.data) into the working directory (onnxruntime 1.32): run it in the
    # scratch folder, so nothing lands in the user's.
    with _working_directory(os.path.dirname(prepared)):
        try:
            quant_pre_process(model, prepared)
        except Exception as exc:  # noqa: BLE001 - ORT raises a bare Exception here
            if "symbolic shape inference" not in str(exc):
                raise
            quant_pre_process(model, prepared, skip_symbolic_shape=True)


@contextlib.contextmanager
def _working_directory(path):
    """contextlib.chdir of Python 3.11, for 3.10."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _int8(options, reference, candidate, workdir) -> None:
    q = require("onnxruntime.quantization", "INT8 quantization")
    prepared = Path(workdir) / "prepared.onnx"
    if not prepared.exists():  # one pre-processing serves every INT8 candidate of a model
        _pre_process(options.model, prepared)
        _rewrite_for_int8(prepared)
    if options.method in nncf_int8.METHODS:
        inputs = list(iter(calibration_reader(options, reference)))
        return nncf_int8.quantize(prepared, candidate, options, reference, inputs)
    method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
              "percentile": q.CalibrationMethod.Percentile}[options.method]
    with contextlib.redirect_stdout(io.StringIO()):  # its calibrators print progress
        cache = _entropy_ranges(prepared, options, reference, workdir) \
            if options.method == "entropy" else None
        q.quantize_static(str(prepared), str(candidate), _CalibrationReader(options, reference),
                          quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=_weight_type(q),
                          calibrate_method=method, calibration_cache_path=cache,
                          nodes_to_exclude=list(options.nodes_to_exclude))


def _rewrite_for_int8(prepared: Path) -> None:
    onnx = require("onnx", "INT8 quantization")
    model = onnx.load(str(prepared))
    if rewrites.for_int8(model):
        onnx.save(model, str(prepared))


# quantize_static builds its entropy calibrator with 128 histogram bins and 128 quantized bins
# and passes no option to change them, so the KL search over thresholds has one candidate, the
# whole range: entropy then gives minmax's ranges exactly (issue #15 saw equal cosines to four
# digits on every model). fexport calibrates entropy itself with TensorRT's 2048 bins, so the
# search has 961 thresholds to choose from, and hands quantize_static the ranges as its cache.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128


def _entropy_ranges(prepared, options, reference, workdir) -> str:
    calibrate = require("onnxruntime.quantization.calibrate", "INT8 quantization")
    calibrator = calibrate.create_calibrator(
        Path(prepared), [], augmented_model_path=str(Path(workdir) / "entropy_augmented.onnx"),
        calibrate_method=calibrate.CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
    calibrator.collect_data(_CalibrationReader(options, reference))
    cache = str(Path(workdir) / "entropy_ranges.json")
    calibrate.save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _fp16(model, candidate) -> None:
    """FP16 weights and activations inside; float32 inputs and outputs, as the contract says."""
    onnx = require("onnx", "FP16 conversion")
    float16 = require("onnxruntime.transformers.float16", "FP16 conversion")
    proto = float16.convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
    onnx.save(proto, str(candidate))


def calibration_reader(options, reference):
    """The calibration images as ONNX Runtime's calibration and debugging tools read them."""
    return _CalibrationReader(options, reference)


class _CalibrationReader:
    """Feeds calibration images to ONNX Runtime's calibrator, loaded exactly as the runtime
    loads them, one image per call (the calibrator keeps statistics, not batches)."""

    def __init__(self, options, reference):
        self.all_paths = list(options.calibration_images)[:options.samples]
        self.paths = iter(self.all_paths)
        self.contract = reference.contract
        self.load_options = reference.load_options

    def get_next(self):
        path = next(self.paths, None)
        if path is None:
            return None
        pixels = images.load(path, self.load_options)[None]
        return {self.contract.input.name: to_model_input(self.contract, pixels)}

    def rewind(self):
        self.paths = iter(self.all_paths)

    def __iter__(self):  # ONNX Runtime's QDQ debugging helpers iterate instead of get_next
        self.rewind()
        return iter(self.get_next, None)


def marked_copy(candidate, contract, precision) -> Path:
    """A copy of `candidate` beside it whose contract says `precision` (an INT8 file judged
    again with its float parts in bf16)."""
    copy = Path(candidate).with_suffix(f".{precision}.onnx")
    shutil.copyfile(candidate, copy)
    _mark(copy, contract, precision)
    return copy


def _mark(candidate, contract, precision) -> None:
    """The candidate's contract says its precision before it is judged, so it is opened (and
    judged) on the backend and precision that will run the variant."""
    proto = require("onnx", "writing a reduced-precision variant").load(str(candidate))
    write_onnx(proto, dataclasses.replace(contract, precision=precision), candidate)


def _samples(options) -> int:
    return min(options.samples, len(options.calibration_images)) \
        if options.precision.startswith("int8") else 0


def _method_label(options) -> str:
    int8 = _NNCF_LABELS.get(options.method, f"static QDQ, per-channel, {options.method}")
    if options.method == "nncf-accuracy":
        int8 += f", measured on {nncf_int8.tuned_on(options)}"
    return {"int8": int8, "int8-bf16": f"{int8}; float parts in bfloat16 (OpenVINO CPU)",
            "fp16": "float16, float32 inputs and outputs",
            "bf16": "bfloat16 compute (OpenVINO CPU), float32 weights, inputs and outputs"}[
        options.precision]


_NNCF_LABELS = {
    "nncf": "NNCF post-training, full bias correction, min-max activation ranges",
    "nncf-accuracy": "NNCF post-training with accuracy control (min cosine on the calibration "
                     "images at least halfway from the gate to 1)"}


def _save(candidate, contract, report: QualityReport, output) -> None:
    proto = require("onnx", "writing a reduced-precision variant").load(str(candidate))
    contract.precision = report.precision
    contract.quantization = report
    write_onnx(proto, contract, output)


def derived_path(fp32_path, precision) -> str:
    """`vgg16.onnx` -> `vgg16.int8.onnx`."""
    path = Path(fp32_path)
    return str(path.with_name(f"{path.stem}.{precision}{path.suffix}"))


def label_of(path) -> str:
    return Path(path).parent.name


def labels_for(paths) -> list | None:
    """Folder-per-class labels when the evaluation images sit in two or more class folders."""
    labels = [label_of(p) for p in paths]
    enough = min(map(labels.count, set(labels)), default=0) >= comparison.PROBE_FOLDS
    return labels if len(set(labels)) >= 2 and enough else None


def _weight_type(q):
    """Signed INT8 weights where the CPU has VNNI or AMX; unsigned elsewhere. Without VNNI,
    ONNX Runtime's u8 x s8 kernels add pairs of products into int16, which saturates
    (host.int8_dot_products): on an AVX2-only AMD EPYC the real mini-Xception's INT8 features
    fell to min cosine 0.754 of float32, 0.989 with 7-bit weights (reduce_range), and passed
    the 0.99 gate with u8 x u8, whose kernels widen before adding."""
    return q.QuantType.QInt8 if host.int8_dot_products() else q.QuantType.QUInt8
