"""What an export is asked for, and every default it takes: ExportOptions, written once here
and read by the exporter, the Python API and the CLI. Standard library only, so that `fexport
export --help` can show the defaults without loading TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fexport.comparison import EXPORT_MAX_REL, EXPORT_MIN_COSINE

DEFAULT_OPSET = 17  # supported by tf2onnx 1.17 and every onnxruntime >= 1.14

RECOMMENDED = "recommended"  # the layer selector for the registry's recommended feature layer


@dataclass
class ExportOptions:
    source: object  # registry name, model path, or a live keras.Model
    layers: list = field(default_factory=lambda: [RECOMMENDED])
    head: str = "flatten"
    weights: str = "imagenet"
    input_size: tuple[int, int] | None = None
    layout: str | None = None  # the ONNX input's layout; None: the model's own
    input_dtype: str = "float32"
    batch: int | None = None
    preprocess: str | None = None  # None: the registry's mode, or "none" for a file
    bake_preprocessing: bool = True
    flatten_order: str | None = None  # None: the cut layer's own (Keras's reshape order)
    normalize: str | None = None  # "l2": unit-length feature rows (after the heads are joined)
    output: str | None = None
    saved_model: str | None = None
    opset: int = DEFAULT_OPSET
    verify: bool = True
    verify_images: list = field(default_factory=list)
    rtol: float = EXPORT_MAX_REL
    min_cosine: float = EXPORT_MIN_COSINE
    unsafe: bool = False
    seed: int = 0
