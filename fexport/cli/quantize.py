"""`fexport quantize` (INT8 for CPUs) and `fexport convert --fp16` (for GPUs), each with a quality
report against the float32 model. Needs a runtime extra and fexport[quantize] (onnx and ONNX
Runtime's tools), never TensorFlow."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fexport.comparison import VARIANT_MIN_COSINE
from fexport.precision import optimize as search
from fexport.precision.quantize import QuantizeOptions

from .options import SPLIT_RULE, Json, ReplaceOutputs, library_default
from .outputs import print_json, refuse_existing, say

Output = Annotated[Optional[str], typer.Option(
    "-o", "--output", help="Output ONNX file (default: MODEL.int8.onnx / MODEL.fp16.onnx).")]
EvalImages = Annotated[Optional[str], typer.Option(
    "--eval-images", help="Images to judge quality on, never used for calibration; class "
                          "subfolders add a linear-probe accuracy. Default: part of the "
                          "calibration folder (see --calibration-images).")]
MinCosine = Annotated[float, typer.Option(
    "--min-cosine", help="Fail below this per-image cosine to float32.")]


def quantize(
    model_file: Annotated[str, typer.Argument(help="float32 ONNX file exported by fexport.")],
    calibration_images: Annotated[str, typer.Option(
        "--calibration-images", help="Folder of images like the ones you will extract. "
                                     + SPLIT_RULE)],
    output: Output = None,
    samples: Annotated[int, typer.Option(min=1, help="Calibration images to use.")]
    = QuantizeOptions.samples,
    method: Annotated[str, typer.Option(
        help="percentile, minmax or entropy (ONNX Runtime); nncf or nncf-accuracy (NNCF, the "
             "second with accuracy control; needs fexport[openvino]).")]
    = QuantizeOptions.method,
    eval_images: EvalImages = None,
    min_cosine: MinCosine = VARIANT_MIN_COSINE,
    bf16: Annotated[bool, typer.Option(
        "--bf16", help="Run the parts left in float in bf16 on OpenVINO (CPUs with AMX or "
                       "AVX-512 BF16; needs fexport[openvino]); judged so. Writes "
                       "MODEL.int8-bf16.onnx by default.")] = False,
    overwrite: ReplaceOutputs = False,
):
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on real images."""
    make_variant(model_file, "int8-bf16" if bf16 else "int8", calibration_images, eval_images,
                 output, overwrite, samples=samples, method=method, min_cosine=min_cosine)


def convert(
    model_file: Annotated[str, typer.Argument(help="float32 ONNX file exported by fexport.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Convert to float16 (GPU).")] = False,
    bf16: Annotated[bool, typer.Option(
        "--bf16", help="Mark for bf16 compute on OpenVINO's CPU plugin (CPUs with AMX or "
                       "AVX-512 BF16; needs fexport[openvino]).")] = False,
    eval_images: Annotated[Optional[str], typer.Option(
        "--eval-images", help="Images to judge quality on.")] = None,
    output: Output = None,
    min_cosine: MinCosine = VARIANT_MIN_COSINE,
    overwrite: ReplaceOutputs = False,
):
    """Make a float16 (GPU) or bf16 (CPU) variant, judged against float32 on real images.

    The variant takes and gives float32 either way."""
    from fexport.errors import UsageError

    if fp16 == bf16:
        raise UsageError("convert needs one target precision: pass --fp16 or --bf16")
    precision = "fp16" if fp16 else "bf16"
    if not eval_images:
        raise UsageError(f"pass --eval-images DIR: the {precision} model is judged against "
                         "float32 on real images")
    make_variant(model_file, precision, None, eval_images, output, overwrite,
                 min_cosine=min_cosine)


def optimize(
    model_file: Annotated[str, typer.Argument(help="float32 ONNX file exported by fexport.")],
    calibration_images: Annotated[str, typer.Option(
        "--calibration-images", help="Folder of images like the ones you will extract; with "
                                     "--eval-images all of them calibrate INT8. "
                                     + SPLIT_RULE)],
    eval_images: EvalImages = None,
    min_cosine: MinCosine = VARIANT_MIN_COSINE,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1,
                                            help="Batch size to time at.")]
    = library_default(search.optimize, "batch_size"),
    iters: Annotated[int, typer.Option(min=1, help="Timed rounds per candidate.")]
    = library_default(search.optimize, "iters"),
    output: Annotated[Optional[str], typer.Option(
        "-o", "--output", help="Where the chosen variant goes (default: MODEL.optimized.onnx)."
    )] = None,
    methods: Annotated[Optional[str], typer.Option(
        help="INT8 methods to try, comma-separated (percentile, minmax, entropy, nncf, "
             "nncf-accuracy). Default: all. Entropy's threshold search and accuracy control's "
             "repeated evaluation take the longest on large transformers.")] = None,
    as_json: Json = False,
    overwrite: ReplaceOutputs = False,
):
    """Write the fastest variant this host runs that keeps the features.

    Builds every variant this host can run (float32 per backend, bf16, INT8 per calibration
    method and by NNCF, INT8 with the nodes in float that a measured search found), judges each
    on images the calibration did not see, times each, and writes the fastest that passes."""
    import tempfile

    from fexport.precision.quantize import derived_path

    output = output or derived_path(model_file, "optimized")
    refuse_existing([output], overwrite)
    sets = _image_sets(calibration_images, eval_images, 10**6, "int8")
    say(sets.summary(), as_json)
    with tempfile.TemporaryDirectory(prefix="fexport-optimize-") as workdir:
        result = search.optimize(model_file, sets, output, workdir, min_cosine, batch_size,
                                 iters, methods and tuple(m.strip() for m in methods.split(",")))
    for line in result.lines():
        say(line, as_json)
    say(f"wrote {result.written}: {result.chosen['candidate']} on {result.chosen['backend']}"
        if result.written else "wrote nothing", as_json)
    if as_json:
        print_json(result.to_dict())


def make_variant(model_file, precision, calibration_dir, eval_dir, output=None, overwrite=False,
                 *, samples=QuantizeOptions.samples, method=QuantizeOptions.method,
                 min_cosine=VARIANT_MIN_COSINE) -> None:
    """Build, judge and write one reduced-precision variant; print its report."""
    from fexport.errors import VerificationError
    from fexport.precision import quantize as q

    output = output or q.derived_path(model_file, precision)
    refuse_existing([output], overwrite)
    sets = _image_sets(calibration_dir, eval_dir, samples, precision)
    typer.echo(sets.summary())
    if warning := sets.warning():
        typer.echo(f"warning: {warning}", err=True)
    options = q.QuantizeOptions(
        model_file, output, precision, sets.calibration,
        samples, method, sets.evaluation, q.labels_for(sets.evaluation), min_cosine)
    try:
        report = q.quantize(options)
    except VerificationError as exc:  # below the threshold: show the numbers, then fail
        for line in exc.report.lines():
            typer.echo(line)
        raise
    typer.echo(f"wrote {options.output}")
    for line in report.lines():
        typer.echo(line)


def _image_sets(calibration_dir, eval_dir, samples, precision):
    from fexport.precision import imagesets

    return imagesets.from_folders(calibration_dir, eval_dir, samples, precision)


# The commands this module adds to the CLI, by name.
COMMANDS = {
    "quantize": quantize,
    "convert": convert,
    "optimize": optimize,
}
