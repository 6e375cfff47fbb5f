"""The Keras side of a comparison: the same cut model an exported file was made from.

Rebuilt from the file's contract exactly as `fexport verify` does, so both sides compute the same
features: Keras's own preprocess_input, the cut model, the head in numpy. Needs TensorFlow.
"""

from __future__ import annotations

from fexport.runtime.timing import Runner


def keras_runners(contract) -> list[Runner]:
    """Keras `predict` (what most users call) and a direct call `model(x)` (the fast path)."""
    from .export import reference_from_contract

    reference = reference_from_contract(contract)
    model, prepare, head = reference.cut_model, reference.network_input, reference.apply_head

    def predict(pixels):
        return head(model.predict(prepare(pixels), verbose=0, batch_size=len(pixels)))

    def direct(pixels):
        return head(model(prepare(pixels), training=False))
    return [Runner("keras.predict", predict), Runner("keras.__call__", direct)]


def save_keras_model(contract, path) -> None:
    """The cut model as a .keras file, for the cold-start comparison."""
    from .export import reference_from_contract

    reference_from_contract(contract).cut_model.save(path)
