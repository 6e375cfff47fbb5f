"""Choose layers and cut a Keras model at them.

A layer selector is a name, an index (negative counts from the end) or "penultimate": the layer
that feeds the classifier, found by walking back from the (first) output past layers without
weights (Softmax, Reshape) to the last layer with weights, then taking its input past any Dropout.
"""

from __future__ import annotations

import difflib
import re

from fexport.errors import LayerError

PENULTIMATE = "penultimate"
_IDENTITY_AT_INFERENCE = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                          "AlphaDropout", "ActivityRegularization")


def parse_selector(text):
    """"-2" -> -2; anything else stays a name."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return text


def needs_top(spec, selectors) -> bool:
    """Whether a registry model must be built with its classifier top for these layers."""
    return any(isinstance(s, int) or s == PENULTIMATE or s in spec.top_layers for s in selectors)


def resolve(model, selector):
    """The layer a selector names, or a LayerError that says what exists."""
    if isinstance(selector, int):
        return _by_index(model, selector)
    if selector == PENULTIMATE:
        return penultimate(model)
    names = [layer.name for layer in model.layers]
    if selector in names:
        return model.get_layer(selector)
    close = difflib.get_close_matches(selector, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise LayerError(f"the model has no layer named {selector!r}.{hint} Run `fexport layers "
                     "MODEL` to list them, or pass an index or 'penultimate'.")


def _by_index(model, index):
    count = len(model.layers)
    if not -count <= index < count:
        raise LayerError(f"layer index {index} is out of range: the model has {count} layers, "
                         f"so use {-count}..{count - 1} (negative counts from the end)")
    return model.layers[index]


def penultimate(model):
    layer = _classifier(model)
    inbound = _inbound_layers(layer)
    while len(inbound) == 1 and type(inbound[0]).__name__ in _IDENTITY_AT_INFERENCE:
        inbound = _inbound_layers(inbound[0])
    if len(inbound) != 1:
        raise LayerError(f"cannot tell which layer feeds the classifier {layer.name!r}; pass "
                         "--layer NAME (see `fexport layers MODEL`)")
    return inbound[0]


def _classifier(model):
    """The last layer with weights on the path to the model's (first) output."""
    layer = model.outputs[0]._keras_history[0]
    while not layer.weights:
        inbound = _inbound_layers(layer) if layer._inbound_nodes else []
        if len(inbound) != 1:
            raise LayerError("cannot find the classifier (a layer with weights) feeding the "
                             "model's output, so 'penultimate' is undefined; pass --layer NAME")
        layer = inbound[0]
    return layer


def _inbound_layers(layer):
    node = layer._inbound_nodes[0]
    inbound = getattr(node, "inbound_layers", None)  # tf_keras
    if inbound is None:  # Keras 3
        inbound = [t._keras_history[0] for t in node.input_tensors]
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def layer_output(layer):
    try:
        return layer.output
    except (AttributeError, ValueError, RuntimeError) as exc:
        raise LayerError(f"layer {layer.name!r} is used at several places in the model, so it "
                         "has no single output to cut at; choose another layer") from exc


def cut(model, layers, tensors=None):
    """A model from the original inputs to the outputs of `layers`, in that order. `tensors`
    ({layer name: output}) gives the output of layers that are used in more than one graph
    (a flattened KerasHub model's, exporter/hub.py), in `model`'s graph."""
    tensors = tensors or {}
    outputs = [tensors[layer.name] if layer.name in tensors else layer_output(layer)
               for layer in layers]
    return keras_module(model).Model(model.inputs, outputs, name="fexport_cut")


def keras_module(model):
    """tf_keras for models that tf_keras loaded, else Keras 3: the two must not be mixed."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9_.\\/>-]")


def make_names_scope_safe(model) -> list[tuple]:
    """Rename layers whose names TensorFlow refuses as name scopes (spaces, ':', '+' ...);
    the (layer, old name) pairs, for `restore_names`.

    Keras accepts any layer name, but calling the model inside a tf.function opens a name scope
    per layer and fails on "conv 1". Callers resolve layers (and record their names) first.
    """
    taken, renamed = {layer.name for layer in model.layers}, []
    for layer in model.layers:
        if _SCOPE_UNSAFE.search(layer.name):
            safe = _SCOPE_UNSAFE.sub("_", layer.name)
            while safe in taken:
                safe += "_"
            taken.add(safe)
            renamed.append((layer, layer.name))
            _rename(layer, safe)
    return renamed


def restore_names(renamed) -> None:
    """Give a user's live model its own layer names back after the export."""
    for layer, name in renamed:
        _rename(layer, name)


def _rename(layer, name) -> None:
    try:
        layer.name = name  # Keras 3: a plain attribute
    except AttributeError:
        layer._name = name  # tf_keras: a read-only property over _name
