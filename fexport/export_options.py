"""What an export is asked for, and every default it takes: ExportOptions, written once here
and read by the exporter, the Python API and the CLI. Standard library only, so that `fexport
export --help` can show the defaults without loading TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_OPSET = 17  # supported by tf2onnx 1.17 and every onnxruntime >= 1.14
# Scale-relative error: max|onnx - keras| / max|keras|. Measured on keras.applications with
# random weights, conversions land between 1e-7 and 2.4e-6 (float32 sums in a different order in
# MLAS than in oneDNN/Eigen); 1e-4 leaves 40x room for deeper nets and pretrained weights, while
# a real conversion defect (a wrong op, axis or constant) shows as 1e-2 or more.
DEFAULT_RTOL = 1e-4
# Per-row cosine similarity: rounding noise of 1e-4 relative costs at most ~1e-8 of cosine, so
# 0.9999 never fails on noise and still catches a feature vector pointing the wrong way.
DEFAULT_MIN_COSINE = 0.9999

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
    rtol: float = DEFAULT_RTOL
    min_cosine: float = DEFAULT_MIN_COSINE
    unsafe: bool = False
    seed: int = 0
