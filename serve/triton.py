"""A Triton Inference Server model repository for an fexport ONNX file (`fexport triton`).

`write_repository(model.onnx, repo)` writes `repo/NAME/config.pbtxt` and a copy of the file as
`repo/NAME/1/model.onnx`, ready for `tritonserver --model-repository repo` with the onnxruntime
backend. The config is Triton's ModelConfig in protobuf text format, generated here from the
file's fexport contract: the input's name, dtype, layout and per-image dims, the features
output, dynamic batching with a bounded queue, the instance group, optionally TensorRT FP16,
and the contract itself as a model parameter, so that a client asking Triton for the config
learns how to feed the model. The text is written by hand, so this module needs neither
protobuf nor tritonclient, and like the rest of the runtime it never imports TensorFlow or onnx.

The NAME folder is built in a hidden temporary sibling and swapped in, so a crash leaves the
previous model or the new one, never a config beside a half-copied file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fexport.errors import ContractError, OutputError, UsageError
from fexport.runtime.contract import METADATA_KEY, stored_contract
from fexport.runtime.files import atomic

CONFIG_NAME = "config.pbtxt"
VERSION = "1"  # Triton serves the highest numbered version folder; a fresh repository has one
MODEL_FILE = "model.onnx"  # the onnxruntime backend's default file name

_DATA_TYPES = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}
_FORMATS = {"nhwc": "FORMAT_NHWC", "nchw": "FORMAT_NCHW", "nhw": "FORMAT_NONE"}

# TensorRT runs inside the onnxruntime backend as an execution accelerator: Triton builds the
# engine when the model loads and falls back to CUDA for the nodes TensorRT cannot take.
_TENSORRT_FP16 = """\
optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
      }
    ]
  }
}"""


@dataclass(frozen=True)
class TritonModel:
    """What write_repository wrote: the model's folder, its config and its model file."""

    name: str
    directory: Path  # OUTPUT_DIR/NAME
    config_path: Path  # OUTPUT_DIR/NAME/config.pbtxt
    model_path: Path  # OUTPUT_DIR/NAME/1/model.onnx
    config_text: str


def write_repository(model_path, output_dir, *, name=None, max_batch_size=32, instances=1,
                     gpu=False, tensorrt_fp16=False, max_queue_delay_us=2000,
                     max_queue_size=256, overwrite=False) -> TritonModel:
    """Write OUTPUT_DIR/NAME (NAME: the file's stem unless given) for Triton to serve.

    A model exported with a fixed batch size gets max_batch_size 0 and no dynamic batching
    whatever `max_batch_size` says (see config_text). An existing NAME folder is replaced only
    with `overwrite=True`.
    """
    contract = _read_contract(model_path)
    name = _model_name(model_path, name)
    text = config_text(contract, name, max_batch_size=max_batch_size, instances=instances,
                       gpu=gpu, tensorrt_fp16=tensorrt_fp16,
                       max_queue_delay_us=max_queue_delay_us, max_queue_size=max_queue_size)
    directory = _repository(output_dir) / name
    _write_model_folder(directory, Path(model_path), text, overwrite)
    return TritonModel(name, directory, directory / CONFIG_NAME,
                       directory / VERSION / MODEL_FILE, text)


def config_text(contract, name, *, max_batch_size=32, instances=1, gpu=False,
                tensorrt_fp16=False, max_queue_delay_us=2000, max_queue_size=256) -> str:
    """The config.pbtxt for a model with `contract`, served as `name`."""
    _check_settings(max_batch_size, instances, gpu, tensorrt_fp16, max_queue_delay_us,
                    max_queue_size)
    # A graph with a fixed batch cannot take the batches Triton would assemble, so it is served
    # the way Triton serves any non-batching model: max_batch_size 0, dims that include the
    # batch, and no dynamic batching (it merges requests into batches, which such a graph
    # cannot take).
    # Serving it beats refusing it: the client then sends exactly `batch` images per request.
    fixed = contract.input.batch is not None
    lines = [f"name: {_quote(name)}", 'backend: "onnxruntime"',
             f"max_batch_size: {0 if fixed else max_batch_size}"]
    lines += _io_lines(contract)
    if not fixed:
        lines += _batching_lines(max_queue_delay_us, max_queue_size)
    lines += _instance_lines(instances, gpu)
    if tensorrt_fp16:
        lines.append(_TENSORRT_FP16)
    lines += _contract_lines(contract)
    return "\n".join(lines) + "\n"


def _check_settings(max_batch_size, instances, gpu, tensorrt_fp16, max_queue_delay_us,
                    max_queue_size) -> None:
    for label, value, least in (("max_batch_size", max_batch_size, 1),
                                ("instances", instances, 1),
                                ("max_queue_delay_us", max_queue_delay_us, 0),
                                ("max_queue_size", max_queue_size, 0)):
        # bool is an int in Python, but max_batch_size=True is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{label} {value!r}: expected a whole number >= {least}")
    if tensorrt_fp16 and not gpu:
        raise UsageError("tensorrt_fp16=True with gpu=False: TensorRT runs only on a GPU "
                         "instance; pass gpu=True as well (CLI: --gpu --tensorrt-fp16), or "
                         "drop tensorrt_fp16")


def _read_contract(model_path):
    contract = stored_contract(model_path)
    if contract is None:
        raise ContractError(f"{model_path} has no fexport contract in its metadata, so its "
                            "input layout, dtype and feature size are unknown; export the "
                            "model with fexport (fexport MODEL -o model.onnx) and pass that file")
    return contract


def _model_name(model_path, name) -> str:
    """The model's folder name: Triton's model name, so one path component, not hidden."""
    name = Path(model_path).stem if name is None else str(name)
    if not name or name in (".", "..") or name.startswith(".") or "/" in name \
            or os.sep in name:
        raise UsageError(f"model name {name!r}: expected a plain folder name (no '/', not "
                         "starting with '.'); pass name= (CLI: --name)")
    return name


def _io_lines(contract) -> list[str]:
    spec = contract.input
    fixed = spec.batch is not None
    if spec.layout not in _FORMATS or spec.dtype not in _DATA_TYPES:
        raise ContractError(f"the model's contract has input layout {spec.layout!r} and dtype "
                            f"{spec.dtype!r}; this fexport writes Triton configs for layouts "
                            f"{sorted(_FORMATS)} and dtypes {sorted(_DATA_TYPES)}. Re-export "
                            "the model with this fexport.")
    dims = spec.shape(spec.batch) if fixed else spec.shape(None)[1:]
    out_dims = (spec.batch, contract.feature_dim) if fixed else (contract.feature_dim,)
    # Triton accepts FORMAT_NHWC / FORMAT_NCHW only with exactly 3 dims, so a fixed batch
    # (4 dims) says FORMAT_NONE; the contract parameter still names the layout.
    layout = _FORMATS[spec.layout] if len(dims) == 3 else "FORMAT_NONE"
    inp = [f"name: {_quote(spec.name)}", f"data_type: {_DATA_TYPES[spec.dtype]}",
           f"format: {layout}", f"dims: {_dims(dims)}"]
    out = [f"name: {_quote(contract.output_name)}", "data_type: TYPE_FP32",
           f"dims: {_dims(out_dims)}"]
    return _list_block("input", inp) + _list_block("output", out)


def _batching_lines(max_queue_delay_us, max_queue_size) -> list[str]:
    # REJECT: a request that outwaits its timeout gets an error at once rather than features
    # too late to use; max_queue_size bounds memory when clients outpace the model.
    return ["dynamic_batching {", f"  max_queue_delay_microseconds: {max_queue_delay_us}",
            "  default_queue_policy {", "    timeout_action: REJECT",
            f"    max_queue_size: {max_queue_size}", "  }", "}"]


def _instance_lines(instances, gpu) -> list[str]:
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    return _list_block("instance_group", [f"count: {instances}", f"kind: {kind}"])


def _contract_lines(contract) -> list[str]:
    # Triton hands model parameters to clients with the config (GET .../config), so the
    # contract travels with the model: preprocessing, layout, feature size, verification.
    return ["parameters {", f"  key: {_quote(METADATA_KEY)}", "  value {",
            f"    string_value: {_quote(contract.to_json())}", "  }", "}"]


def _list_block(key, fields) -> list[str]:
    """`key [ { fields } ]`: a repeated message field with one entry."""
    return [f"{key} [", "  {", *(f"    {field}" for field in fields), "  }", "]"]


def _dims(values) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _quote(text: str) -> str:
    """`text` as a text-format string literal: UTF-8 bytes, with quotes, backslashes and
    every byte outside printable ASCII escaped in octal, which any protobuf parser reads."""
    out = []
    for byte in str(text).encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _repository(output_dir) -> Path:
    """The repository root, created if missing: it is a folder of models, and the first model
    written into it is what makes it exist."""
    root = Path(output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the model repository {root}: "
                          f"{exc.strerror or exc}") from exc
    return root


def _write_model_folder(directory: Path, source: Path, text: str, overwrite: bool) -> None:
    # Checked before the work, not atomically with the swap: two writers racing for one NAME
    # is not a case this guards; the swap itself still leaves one whole folder.
    if (directory.exists() or directory.is_symlink()) and not overwrite:
        raise OutputError(f"{directory} already exists; pass overwrite=True (CLI: --overwrite) "
                          "to replace it, or choose another name or output folder")
    with atomic.atomic_path(directory, directory=True) as tmp:
        version = Path(tmp) / VERSION
        version.mkdir(parents=True)
        shutil.copyfile(source, version / MODEL_FILE)
        (Path(tmp) / CONFIG_NAME).write_text(text, encoding="utf-8")
        _sync_tree(Path(tmp))


def _sync_tree(folder: Path) -> None:
    """fsync the files and folders before the swap: atomic_path syncs only the rename, and a
    folder swapped in with unsynced data could surface empty after a power cut."""
    for path in (folder / VERSION / MODEL_FILE, folder / CONFIG_NAME):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    atomic.fsync_dir(folder / VERSION)
    atomic.fsync_dir(folder)
