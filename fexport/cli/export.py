"""Commands that need the conversion stack: export, layers, verify, models.

The exporter (TensorFlow) is imported inside the commands, so the lean commands stay lean.
Export's defaults are ExportOptions' own (fexport/export_options.py, no TensorFlow), shown in
--help; an option whose default depends on the model (layout, preprocess, ...) stays None and
the exporter decides.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from fexport import api
from fexport.export_options import ExportOptions
from fexport.precision.quantize import QuantizeOptions
from fexport.runtime.files.images import list_images

from .options import SPLIT_RULE, InputSize, Json, ReplaceOutputs, Unsafe, Weights, library_default
from .outputs import print_json, refuse_existing
from .quantize import make_variant


def export(
    model: Annotated[str, typer.Argument(help="Registry name (vgg16, ResNet50, ...), a "
                                              ".keras/.h5 file or SavedModel directory, or a "
                                              "KerasHub preset (a directory, a kaggle:// or "
                                              "hf:// handle, or a preset name).")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="ONNX file.")] = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", "-l", help="Name, index (negative from the end), 'penultimate', or for "
                              "KerasHub transformers block:K (block:-1 the last); repeat to "
                              "concatenate layers. Default: the recommended feature layer.")]
    = None,
    head: Annotated[str, typer.Option(
        help="flatten, avg, max or none; for transformer tokens cls, mean (patch tokens), "
             "cls+mean, or pooled (the model's own image embedding).")] = ExportOptions.head,
    normalize: Annotated[Optional[str], typer.Option(
        help="l2: unit-length feature rows.")] = None,
    weights: Weights = ExportOptions.weights,
    input_size: InputSize = None,
    layout: Annotated[Optional[str], typer.Option(
        help="ONNX input layout: nhwc, nchw or nhw (grayscale, no channel axis). Default: the "
             "model's own.")] = None,
    input_dtype: Annotated[str, typer.Option(help="float32 or uint8.")] = (
        ExportOptions.input_dtype),
    batch: Annotated[Optional[int], typer.Option(help="Pin the batch size (default: any).")] = None,
    preprocess: Annotated[Optional[str], typer.Option(
        help="Bake caffe, tf, torch or none (default: the registry's mode, a KerasHub "
             "preset's own scale and offset; none for files).")]
    = None,
    no_preprocess: Annotated[bool, typer.Option(
        "--no-preprocess", help="Export the raw network; the runtime then preprocesses.")] = False,
    flatten_order: Annotated[Optional[str], typer.Option(
        help="nhwc or nchw. Default: the cut layer's own, as Keras's predict(x).reshape(N, -1) "
             "orders it.")] = None,
    saved_model: Annotated[Optional[str], typer.Option(help="Also write a SavedModel here.")]
    = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = ExportOptions.opset,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip verification.")] = False,
    verify_images: Annotated[Optional[str], typer.Option(
        help="Also verify on the images in this folder.")] = None,
    rtol: Annotated[float, typer.Option(help="Max scale-relative error.")] = ExportOptions.rtol,
    min_cosine: Annotated[float, typer.Option(help="Min per-row cosine.")] = (
        ExportOptions.min_cosine),
    report: Annotated[Optional[str], typer.Option(help="Write the verification JSON here.")] = None,
    unsafe: Unsafe = False,
    seed: Annotated[int, typer.Option(help="Init seed for --weights none.")] = ExportOptions.seed,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Also write OUTPUT.int8.onnx (needs --calibration-images).")] = False,
    fp16: Annotated[bool, typer.Option(
        "--fp16", help="Also write OUTPUT.fp16.onnx (judged on --calibration-images).")] = False,
    calibration_images: Annotated[Optional[str], typer.Option(
        help=f"Images for --int8/--fp16 ({QuantizeOptions.samples} at most calibrate). "
             + SPLIT_RULE)] = None,
    overwrite: ReplaceOutputs = False,
):
    """Cut MODEL at a layer, add a head, bake preprocessing, save ONNX, verify against Keras."""
    from fexport.errors import VerificationError

    variants = _wanted_variants(output, int8, fp16, calibration_images)
    refuse_existing([output, saved_model] + _variant_paths(output, variants), overwrite)
    try:  # options left None are decided by the exporter, from the model
        result = api.export(
            model, layer, head=head, output=output, weights=weights, input_size=input_size,
            layout=layout, input_dtype=input_dtype, batch=batch, preprocess=preprocess,
            bake_preprocessing=not no_preprocess, flatten_order=flatten_order,
            normalize=normalize, saved_model=saved_model, opset=opset, verify=not no_verify,
            rtol=rtol, min_cosine=min_cosine, unsafe=unsafe, seed=seed,
            verify_images=list_images(verify_images) if verify_images else None)
    except VerificationError as exc:
        _print_report(exc.report, report)
        raise
    typer.echo(result.summary())
    _print_report(result.report, report)
    _variants(output, variants, calibration_images, overwrite)


def _wanted_variants(output, int8, fp16, calibration_images) -> list[str]:
    from fexport.errors import UsageError

    wanted = [p for p, on in (("int8", int8), ("fp16", fp16)) if on]
    if wanted and not (output and calibration_images):
        raise UsageError("--int8/--fp16 need -o FILE.onnx and --calibration-images DIR")
    return wanted


def _variant_paths(output, wanted) -> list[str]:
    from fexport.precision.quantize import derived_path

    return [derived_path(output, precision) for precision in wanted]


def _variants(output, wanted, calibration_images, overwrite) -> None:
    for precision in wanted:
        make_variant(output, precision, calibration_images, None, overwrite=overwrite)


def _print_report(report, path) -> None:
    if report is None:
        return
    from fexport.runtime.files import atomic

    for line in report.lines():
        typer.echo(line)
    if path:
        atomic.write_bytes(path, json.dumps(report.to_dict(), indent=2).encode())


def layers(
    model: Annotated[str, typer.Argument(help="Registry name, model file or KerasHub preset.")],
    weights: Weights = library_default(api.layers, "weights"),
    input_size: InputSize = None,
    as_json: Json = False,
    unsafe: Unsafe = False,
):
    """List every layer with its output shape and the features each head would give."""
    rows = api.layers(model, weights=weights, input_size=input_size, unsafe=unsafe)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    tokens = any(r.mean is not None for r in rows)  # a transformer: token heads' columns
    pooled = ("cls", "mean", "cls+mean") if tokens else ("avg", "max")
    typer.echo(f"{'idx':>4}  {'name':<32} {'type':<24} {'output shape':<22} "
               f"{'flatten':>9} {pooled[0]:>6} {pooled[1]:>6}"
               + (f" {pooled[2]:>8}" if tokens else ""))
    for r in rows:
        shape = "?" if r.output_shape is None else str(tuple(r.output_shape))
        mark = "  *recommended" if r.recommended else ""
        mark += f"  [{r.point}]" if r.point else ""
        widths = (r.cls, r.mean, r.cls_mean) if tokens else (r.avg, r.max)
        typer.echo(f"{r.index:>4}  {r.name:<32} {r.type:<24} {shape:<22} {_dim(r.flatten):>9} "
                   f"{_dim(widths[0]):>6} {_dim(widths[1]):>6}"
                   + (f" {_dim(widths[2]):>8}" if tokens else "") + mark)


def _dim(value) -> str:
    return "-" if value is None else str(value)


def verify(
    model_file: Annotated[str, typer.Argument(help="An ONNX file exported by fexport.")],
    source: Annotated[Optional[str], typer.Option(
        help="Where the Keras model is now, if it moved since export.")] = None,
    verify_images: Annotated[Optional[str], typer.Option(help="Also verify on these.")] = None,
    rtol: Annotated[float, typer.Option(help="Max scale-relative error.")] = ExportOptions.rtol,
    min_cosine: Annotated[float, typer.Option(help="Min per-row cosine.")] = (
        ExportOptions.min_cosine),
    report: Annotated[Optional[str], typer.Option(help="Write the JSON report here.")] = None,
    unsafe: Unsafe = False,
):
    """Compare an exported model with Keras again, rebuilt from the file's contract."""
    from fexport.errors import VerificationError
    from fexport.exporter.export import verify_file

    paths = list_images(verify_images) if verify_images else []
    result = verify_file(model_file, source, paths, rtol, min_cosine, unsafe)
    _print_report(result, report)
    if not result.passed:
        raise VerificationError(f"{model_file} differs from Keras beyond tolerance (see above)")


def list_models(as_json: Json = False,
                hub: Annotated[bool, typer.Option(
                    "--hub", help="List the KerasHub image families instead.")] = False):
    """List the registered keras.applications backbones, then the KerasHub families."""
    from dataclasses import asdict

    from fexport import models
    from fexport.models.hub_families import FAMILIES

    if as_json:
        print_json([asdict(s) for s in (FAMILIES if hub else models.SPECS)])
        return
    if not hub:
        for s in models.SPECS:
            layer = s.feature_layer or "(backbone output)"
            typer.echo(f"{s.name:<20} {s.input_size[0]:>3}x{s.input_size[1]:<4} "
                       f"{s.preprocessing:<6} {layer:<22} {s.feature_dim}")
        typer.echo("\nKerasHub image families (fexport PRESET; `fexport models --hub --json`):")
    for f in FAMILIES:
        typer.echo(f"  {f.name:<33} heads {', '.join(f.heads):<36} e.g. {f.presets[0]}")


# The commands this module adds to the CLI, by name.
COMMANDS = {
    "export": export,
    "layers": layers,
    "verify": verify,
    "models": list_models,
}
