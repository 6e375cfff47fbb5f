"""Write the artifacts atomically: the ONNX file (contract in its metadata) and the SavedModel
(contract in a sidecar file), each appearing whole or not at all."""

from __future__ import annotations

from pathlib import Path

from fexport.runtime.files import atomic

SIDECAR = "fexport_contract.json"


def save_saved_model(function, model, contract, directory) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.features = function
    # The function captures the model's variables; SavedModel only saves tracked ones.
    module.weights = [getattr(v, "value", v) for v in model.weights]
    with atomic.atomic_path(directory, directory=True) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": function})
        (Path(tmp) / SIDECAR).write_text(contract.to_json())
