"""What each field of a contract may hold: checked when a contract is read from a file, so that
a damaged or hand-edited contract is refused by the field's name instead of steering the
runtime wrongly (a list for a feature width, an unknown backend)."""

from __future__ import annotations

from fexport.errors import ContractError
from fexport.models.preprocessing import MODES

HEADS = ("flatten", "avg", "max", "none", "cls", "mean", "cls+mean", "pooled",
         "unknown")  # "unknown": a file made elsewhere
PRECISIONS = ("float32", "int8", "fp16", "bf16", "int8-bf16")


def _whole(least):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least,
            f"a whole number >= {least}")


def _one_of(*choices):
    return (lambda v: v in choices, "one of " + ", ".join(map(repr, choices)))


def _kind(kind, text, optional=False):
    def valid(value):
        if optional and value is None:
            return True
        if kind is bool:
            return isinstance(value, bool)
        return isinstance(value, kind) and not isinstance(value, bool)

    return valid, text + (" or null" if optional else "")


_TEXT = _kind(str, "a string")
INPUT_FIELDS = {"name": _TEXT, "height": _whole(1), "width": _whole(1), "channels": _whole(1),
                "layout": _one_of("nhwc", "nchw", "nhw"), "dtype": _one_of("float32", "uint8"),
                "batch": (lambda v: v is None or _whole(1)[0](v), "a whole number >= 1 or null")}
_NUMBERS = (lambda v: v is None or (isinstance(v, list) and v and all(
    isinstance(n, (int, float)) and not isinstance(n, bool) for n in v)),
    "a non-empty list of numbers or null")
_RESIZE = (lambda v: v is None or (isinstance(v, dict) and v.get("interpolation") in (
    "nearest", "bilinear", "bicubic") and all(isinstance(v.get(k), bool) for k in (
        "antialias", "crop_to_aspect_ratio"))),
    "null or {interpolation: nearest|bilinear|bicubic, antialias: bool, "
    "crop_to_aspect_ratio: bool}")
FIELDS = {"source": _TEXT, "source_kind": _one_of("registry", "file", "memory", "preset"),
          "weights": _TEXT, "head": _one_of(*HEADS), "preprocessing": _one_of(*MODES),
          "preprocessing_baked": _kind(bool, "true or false"), "feature_dim": _whole(0),
          "output_name": _TEXT, "flatten_order": _one_of("nhwc", "nchw"),
          "seed": _kind(int, "a whole number", optional=True),
          "include_top": _kind(bool, "true or false"), "versions": _kind(dict, "an object"),
          "precision": _one_of(*PRECISIONS),
          "backend": _one_of(None, "onnxruntime", "openvino"),
          "optimization": _kind(dict, "an object", optional=True),
          "source_class": _kind(str, "a string", optional=True),
          "preprocessing_scale": _NUMBERS, "preprocessing_offset": _NUMBERS, "resize": _RESIZE,
          "normalize": _one_of(None, "l2"),
          "layers": (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                     "a list of layer names")}


def check(contract) -> None:
    """ContractError naming the first field whose value the runtime cannot rely on."""
    for prefix, obj, fields in (("", contract, FIELDS), ("input.", contract.input,
                                                        INPUT_FIELDS)):
        for name, (valid, expected) in fields.items():
            value = getattr(obj, name)
            if not _safe(valid, value):
                raise ContractError(
                    f"the model's fexport contract has {prefix}{name} = {_shown(value)}; "
                    f"expected {expected}. The file's metadata is damaged or was edited: "
                    "re-export the model with fexport.")


def _safe(valid, value) -> bool:
    try:
        return bool(valid(value))
    except TypeError:  # an unhashable value tested for membership: not one of the choices
        return False


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
