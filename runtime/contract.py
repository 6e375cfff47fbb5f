"""The artifact's contract: what an exported model expects and what it returns, and the one
place that writes it into a file, reads it back, infers it for a file made elsewhere, and turns
pixels into the input it describes.

The exporter writes it into the ONNX file's `metadata_props` (and beside a SavedModel). The
runtime reads it straight from the file's protobuf bytes: the contract lives in
ModelProto.metadata_props (field 14, entries of key = 1 and value = 2), and reading it this way
needs neither the onnx package nor an inference engine, and skips the graph (hundreds of MB for
large models) by seeking over it, so the contract can decide which engine opens the file. It
lives in the lean half so that reading it never needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field

import numpy as np

from fexport.errors import ContractError, FexportError, UsageError
from fexport.models import preprocessing
from fexport.reports import QualityReport, VerificationReport

from . import backends, contract_fields, contract_migrations
from .files import atomic, images

METADATA_KEY = "fexport.contract"
# 2: `verification` holds every check and the tolerances as max_rel_allowed and
# min_cosine_required; `quantization` names its gate min_cosine_required (fexport/reports.py).
# 3: adds preprocessing_scale/offset (scale_offset), resize, normalize and source_kind "preset"
# (KerasHub). Older versions are upgraded on open (contract_migrations.py).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass(frozen=True)
class InputSpec:
    """The ONNX input: pixel values 0..255 unless `preprocessing_baked` is False."""

    name: str
    height: int
    width: int
    channels: int
    layout: str = "nhwc"  # "nhwc", "nchw" or "nhw" (grayscale without a channel axis)
    dtype: str = "float32"  # "float32" or "uint8"
    batch: int | None = None  # None: any batch size

    def shape(self, batch):
        hw = (self.height, self.width)
        if self.layout == "nchw":
            return (batch, self.channels, *hw)
        if self.layout == "nhw":
            return (batch, *hw)
        return (batch, *hw, self.channels)


@dataclass
class Contract:
    source: str  # registry name ("VGG16") or the model file's name
    source_kind: str  # "registry", "file" or "memory" (a live Keras model object)
    weights: str  # "imagenet", "none" or a weights file's name
    layers: list[str]
    head: str  # "flatten", "avg", "max" or "none"
    input: InputSpec
    preprocessing: str  # the mode the network expects: "caffe", "tf", "torch" or "none"
    preprocessing_baked: bool  # True: the graph applies it; False: the caller must
    feature_dim: int
    output_name: str = "features"
    # Order of a flatten head's features: channels-last or channels-first (by default the cut
    # layer's own, which is Keras's predict(x).reshape(N, -1)).
    flatten_order: str = "nhwc"
    seed: int | None = None  # the init seed when weights are "none", so `verify` can rebuild them
    include_top: bool = False
    versions: dict = field(default_factory=dict)
    verification: VerificationReport | None = None  # None: exported with --no-verify
    precision: str = "float32"  # "float32", or the variant's: "int8", "fp16", "bf16", "int8-bf16"
    quantization: QualityReport | None = None  # a variant's quality against its float32 model
    backend: str | None = None  # the backend an optimized variant won on (`auto` opens it so)
    optimization: dict | None = None  # `fexport optimize`'s table of candidates
    source_class: str | None = None  # the Keras class of an in-memory model ("Sequential")
    # scale_offset preprocessing (KerasHub's ImageConverter): x * scale + offset, one number or
    # one per channel.
    preprocessing_scale: list | None = None
    preprocessing_offset: list | None = None
    # How the model's own pipeline resizes images to the input size (KerasHub's converter:
    # keras.ops.image.resize with interpolation, antialias, crop_to_aspect_ratio), which the
    # runtime's loader then reproduces; None: Keras's load_img (nearest, no crop).
    resize: dict | None = None
    normalize: str | None = None  # "l2": the graph returns unit-length rows
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for name in _REPORTS:  # their own to_dict: it adds what they derive, such as `passed`
            report = getattr(self, name)
            data[name] = report.to_dict() if report is not None else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
            version = data.get("format_version")
            if version not in READABLE_VERSIONS:
                raise ContractError(
                    f"the model's fexport contract has format_version {version!r}; this fexport "
                    f"reads versions {', '.join(map(str, READABLE_VERSIONS))}. Re-export the "
                    "model with this fexport.")
            data = contract_migrations.upgrade(data)
            data["input"] = InputSpec(**data["input"])
            for name, report_class in _REPORTS.items():
                if data.get(name) is not None:
                    data[name] = report_class.from_dict(data[name])
            contract = cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ContractError(
                f"the model's fexport metadata is not a valid contract ({exc}). Re-export the "
                "model, or pass the input size yourself to use it as a plain ONNX file.") from exc
        contract_fields.check(contract)
        return contract


# The contract's fields that hold a typed report, and the report's class.
_REPORTS = {"verification": VerificationReport, "quantization": QualityReport}


def attach(proto, contract) -> None:
    """Put `contract` into an ONNX ModelProto's metadata, replacing an earlier one (plain
    protobuf access: no onnx import needed)."""
    for entry in list(proto.metadata_props):
        if entry.key == METADATA_KEY:
            proto.metadata_props.remove(entry)
    proto.metadata_props.add(key=METADATA_KEY, value=contract.to_json())
    proto.producer_name = "fexport"


def write_onnx(proto, contract, path) -> None:
    """The ONNX file with its contract, written atomically (whole or not at all)."""
    attach(proto, contract)
    atomic.write_bytes(path, proto.SerializeToString())


def plain_contract(input_name, height, width, channels, layout, dtype, feature_dim, output_name):
    """A contract for an ONNX file made elsewhere: the caller states what fexport cannot read."""
    spec = InputSpec(input_name, height, width, channels, layout, dtype)
    return Contract(source="external", source_kind="file", weights="unknown", layers=[],
                    head="unknown", input=spec, preprocessing="none", preprocessing_baked=True,
                    feature_dim=feature_dim, output_name=output_name)


def to_model_input(contract, pixels: np.ndarray) -> np.ndarray:
    """float32 NHWC RGB pixels 0..255 -> the ONNX input (its dtype, layout, preprocessing)."""
    spec = contract.input
    if not contract.preprocessing_baked:
        pixels = preprocessing.apply(contract.preprocessing, pixels, contract.preprocessing_scale,
                                     contract.preprocessing_offset)
    if spec.dtype == "uint8":
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images.from_nhwc(pixels, spec.layout))


def stored_contract(path) -> Contract | None:
    """The fexport contract in the file's metadata, or None for an ONNX file made elsewhere."""
    backends.check_model_file(path)
    try:
        text = read_metadata(path).get(METADATA_KEY)
    except FexportError as exc:
        raise FexportError(f"{path}: cannot load it as an ONNX model ({exc}). Re-export it with "
                           "fexport, or check that the file is complete.") from exc
    return Contract.from_json(text) if text else None


def read_contract(path, input_size=None, engine=None) -> Contract:
    """The file's fexport contract, or one inferred from its input (`engine`, an opened
    backend, shows it) when it has none and `input_size` says the image size."""
    return stored_contract(path) or infer_contract(engine, path, input_size)


def infer_contract(engine, path, input_size) -> Contract:
    if input_size is None or engine is None:
        raise UsageError(f"{path} has no fexport metadata, so its input size is unknown; pass "
                         "input_size=(height, width) (CLI: --input-size H W), or export the "
                         "model with fexport")
    height, width = input_size
    inp, out = engine.inputs[0], engine.outputs[0]
    shape = [d if isinstance(d, int) else None for d in inp.shape]
    if len(shape) != 4:
        raise UsageError(f"the model's input {inp.name!r} has shape {inp.shape}; fexport needs "
                         "a 4-D image input (N, H, W, C) or (N, C, H, W)")
    layout = "nchw" if shape[1] in (1, 3) and shape[3] not in (1, 3) else "nhwc"
    channels = shape[1] if layout == "nchw" else shape[3]
    dtype = "uint8" if inp.type == "tensor(uint8)" else "float32"
    dim = out.shape[-1] if isinstance(out.shape[-1], int) else 0
    return plain_contract(inp.name, int(height), int(width), channels or 3, layout, dtype,
                          dim, out.name)


# The protobuf reader behind stored_contract.
METADATA_PROPS = 14
LENGTH_DELIMITED, VARINT, FIXED64, FIXED32 = 2, 0, 1, 5


def read_metadata(path) -> dict[str, str]:
    """{key: value} of the file's metadata_props; FexportError when it is not protobuf."""
    props = {}
    with open(path, "rb") as f:
        for field, value in _fields(f, keep=METADATA_PROPS):
            if field == METADATA_PROPS:
                entry = dict(_fields(io.BytesIO(value), keep=None))
                props[_text(entry.get(1))] = _text(entry.get(2))
    return props


def _fields(stream, keep):
    """(field number, value) of each top-level field; length-delimited values are read only
    for the field `keep` (None: all), others are skipped."""
    while (tag := _varint(stream)) is not None:
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            yield field, _varint(stream)
        elif wire == LENGTH_DELIMITED:
            size = _varint(stream)
            if size is None:
                raise FexportError("not an ONNX file: it ends inside a protobuf field")
            if keep is None or field == keep:
                yield field, stream.read(size)
            else:
                stream.seek(size, io.SEEK_CUR)
        elif wire in (FIXED64, FIXED32):
            stream.seek(8 if wire == FIXED64 else 4, io.SEEK_CUR)
        else:
            raise FexportError(f"not an ONNX file: protobuf wire type {wire} in field {field}")


def _varint(stream) -> int | None:
    result, shift = 0, 0
    while byte := stream.read(1):
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise FexportError("not an ONNX file: a malformed protobuf varint")
    if shift:
        raise FexportError("not an ONNX file: it ends inside a protobuf varint")
    return None


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else ""
