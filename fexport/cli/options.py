"""Option aliases shared by several commands, declared once; and how an option takes its default
from the library, which owns every default."""

from __future__ import annotations

import inspect
from typing import Annotated, Optional

import typer

from fexport.comparison import MIN_EVALUATION_IMAGES

Device = Annotated[str, typer.Option(
    "--device", help="auto (CUDA if it loads), cpu, cuda or tensorrt (the tensorrt extra: "
                     "TensorRT engines in the file's own precision, built on the first start "
                     "and cached).")]
Backend = Annotated[str, typer.Option(
    "--backend", help="auto, onnxruntime or openvino (the openvino extra); auto: ONNX Runtime, "
                      "but OpenVINO for bf16 files, INT8 files on CPUs with AMX, and files "
                      "`fexport optimize` chose it for.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="auto (the file's own: float32, or its variant's), fp32 or bf16 (a "
                        "bf16 variant from `fexport convert --bf16`).")]
Threads = Annotated[Optional[int], typer.Option(
    "--threads", help="Intra-op threads for onnxruntime (default: all cores).")]
DecodeQuality = Annotated[str, typer.Option(
    "--decode-quality", help="exact (every pixel, as Keras) or fast: JPEGs decoded at reduced "
                             "size (check it with fexport verify-decode).")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")]
InputSize = Annotated[Optional[tuple[int, int]], typer.Option(
    "--input-size", help="Input height and width, e.g. --input-size 224 224.")]
Weights = Annotated[str, typer.Option(
    "--weights", help="Registry models: imagenet (download), none (random init) or a file.")]
Unsafe = Annotated[bool, typer.Option(
    "--unsafe", help="Allow Lambda layers (runs the model file's Python code).")]
# How one folder is split into calibration and evaluation images (fexport.precision.imagesets).
SPLIT_RULE = ("Without --eval-images the folder is split: shuffled with a fixed seed, a third "
              f"(at least {MIN_EVALUATION_IMAGES}) judge quality, up to --samples of the rest "
              "calibrate (INT8), any others judge too.")
Json = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON document on stdout, nothing else there (other "
                   "lines go to stderr).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace existing outputs (and discard an interrupted run's store).")]
# Commands that write files, without extract's run store.
ReplaceOutputs = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run with the same model, inputs and options.")]


def library_default(function, parameter: str):
    """The default `function` gives `parameter`, for an option to show and pass on: written once,
    in the library."""
    return inspect.signature(function).parameters[parameter].default
