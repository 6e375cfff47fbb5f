"""The Keras side of a comparison: the same cut model an exported file was made from.

Rebuilt from the file's contract exactly as `fexport verify` does, so both sides compute the same
features: Keras's own preprocess_input, the cut model, the head in numpy. Needs TensorFlow.
"""

from __future__ import annotations

import numpy as np

from fexport.errors import UsageError

from .core import Runner


def keras_model_for(contract):
    """(cut Keras model, preprocess function, head function) for an fexport contract."""
    from fexport.exporter import heads
    from fexport.exporter.export import options_from_contract, prepare, reference_for

    if contract.source_kind not in ("registry", "file"):
        raise UsageError("--compare-keras needs a model exported by fexport: this one has no "
                         "Keras source in its metadata")
    options = options_from_contract(contract)
    prepared = prepare(options)
    reference = reference_for(prepared, options)

    def head(outputs):
        parts = [heads.apply_numpy(options.head, np.asarray(o), options.flatten_order)
                 for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
        return np.concatenate(parts, axis=1)
    return prepared.cut_model, reference.preprocess, head


def keras_runners(contract) -> list[Runner]:
    """Keras `predict` (what most users call) and a direct call `model(x)` (the fast path)."""
    model, preprocess, head = keras_model_for(contract)

    def predict(pixels):
        return head(model.predict(preprocess(pixels.copy()), verbose=0, batch_size=len(pixels)))

    def direct(pixels):
        return head(model(preprocess(pixels.copy()), training=False))
    return [Runner("keras.predict", predict), Runner("keras.__call__", direct)]


def save_keras_model(contract, path) -> None:
    """The cut model as a .keras file, for the cold-start comparison."""
    model, _, _ = keras_model_for(contract)
    model.save(path)
