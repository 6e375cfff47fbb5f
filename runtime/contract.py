"""The artifact's contract: what an exported model expects and what it returns.

The exporter writes it into the ONNX file's `metadata_props` (and beside a SavedModel); the
runtime reads it back with onnxruntime alone. It lives in the lean half so that reading it never
needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from fexport.errors import ContractError

from . import atomic

METADATA_KEY = "fexport.contract"
FORMAT_VERSION = 1


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
    verification: dict | None = None
    precision: str = "float32"  # "float32", or the variant's: "int8", "fp16", "bf16", "int8-bf16"
    quantization: dict | None = None  # a variant's quality report against its float32 model
    backend: str | None = None  # the backend an optimized variant won on (`auto` opens it so)
    optimization: dict | None = None  # `fexport optimize`'s table of candidates
    source_class: str | None = None  # the Keras class of an in-memory model ("Sequential")
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
            version = data.get("format_version")
            if version != FORMAT_VERSION:
                raise ContractError(
                    f"the model's fexport contract has format_version {version!r}; this fexport "
                    f"reads version {FORMAT_VERSION}. Re-export the model with this fexport.")
            data["input"] = InputSpec(**data["input"])
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ContractError(
                f"the model's fexport metadata is not a valid contract ({exc}). Re-export the "
                "model, or pass the input size yourself to use it as a plain ONNX file.") from exc


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
