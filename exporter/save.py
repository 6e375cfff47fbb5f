"""Write the artifacts atomically: the ONNX file (contract in its metadata) and the SavedModel
(contract in a sidecar file), each appearing whole or not at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fexport.runtime.contract import attach
from fexport.runtime.files import atomic

SIDECAR = "fexport_contract.json"
# Protobuf cannot serialize a message over 2 GiB, so an ONNX file whose weights come near it
# keeps them in a sidecar file (ONNX external data, "FILE.onnx.data"); 1.8 GiB leaves room for
# the graph and the contract. ONNX Runtime and OpenVINO read the sidecar from beside the file.
EXTERNAL_DATA_OVER_BYTES = int(1.8 * 2**30)
EXTERNAL_TENSOR_BYTES = 1024  # tensors at least this large go to the sidecar


def initializer_bytes(proto) -> int:
    return sum(len(t.raw_data) for t in proto.graph.initializer)


def needs_external_data(proto) -> bool:
    return initializer_bytes(proto) > EXTERNAL_DATA_OVER_BYTES


def sidecar_of(path) -> Path:
    return Path(f"{path}.data")


def write_with_external_data(proto, contract, path) -> None:
    """The ONNX file and its weights sidecar, each written whole (the sidecar first: a file
    that exists always finds its weights). Moves the weights out of `proto`."""
    from onnx.external_data_helper import convert_model_to_external_data

    attach(proto, contract)
    data = sidecar_of(path)
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location=data.name,
                                   size_threshold=EXTERNAL_TENSOR_BYTES)
    with atomic.atomic_path(path) as tmp:  # onnx writes the sidecar beside the temporary file
        import onnx

        onnx.save_model(proto, str(tmp))
        _replace_sidecar(Path(tmp).parent / data.name, data)


def save_saved_model(function, model, contract, directory) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.features = function
    # The function captures the model's variables; SavedModel only saves tracked ones.
    module.weights = [getattr(v, "value", v) for v in model.weights]
    with atomic.atomic_path(directory, directory=True) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": function})
        (Path(tmp) / SIDECAR).write_text(contract.to_json())


def rewrite_contract(path, contract) -> None:
    """Put `contract` into a written file whose weights are in its sidecar (left as they are)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    attach(proto, contract)
    atomic.write_bytes(path, proto.SerializeToString())


def _replace_sidecar(written: Path, target: Path) -> None:
    os.replace(written, target) if written.parent.stat().st_dev == target.parent.stat().st_dev \
        else shutil.move(written, target)
    atomic.fsync_dir(target.parent)
