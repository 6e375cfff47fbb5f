"""Load a model: a registry name (with imagenet, random or file weights) or the user's own file.

Keras 3 reads `.keras` and most `.h5`; files written by Keras 2 / tf.keras 2.x that Keras 3
cannot read, and SavedModel directories, fall back to tf_keras. Safe mode stays on: a model
with a Lambda layer (arbitrary Python) is refused unless the caller passes `unsafe=True`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from fexport.errors import ModelLoadError, UsageError, WeightsUnavailableError, whole_sentences
from fexport.models.weights import keras_cache

from .sources import FILE, LIVE, ModelSource, Source


def load(source: ModelSource, weights="imagenet", include_top=False, input_size=None, seed=0,
         unsafe=False):
    """(model, Source) for a resolved registry name, model file/directory or live model."""
    if source.kind in (LIVE, FILE):
        check_own_weights(weights, "a model file or object")
        return live_model(source.given) if source.kind == LIVE else \
            load_file(source.given, unsafe)
    spec = source.spec
    model = build_registry_model(spec, weights, include_top, input_size, seed)
    seed = seed if weights in ("none", None) else None
    return model, Source(spec.name, "registry", _weights_label(weights), seed, include_top)


def _weights_label(weights) -> str:
    if weights in (None, "none"):
        return "none"
    return weights if weights == "imagenet" else str(Path(weights).resolve())


def build_registry_model(spec, weights, include_top, input_size=None, seed=0):
    import keras

    kwargs = dict(include_top=include_top, weights=_keras_weights(weights))
    size = tuple(input_size) if input_size else spec.input_size
    if size != spec.input_size or not include_top:
        kwargs["input_shape"] = (*size, 3)
    keras.backend.clear_session()  # auto-generated layer names restart, as in a fresh process
    if kwargs["weights"] is None:
        keras.utils.set_random_seed(seed)  # random init is reproducible, so `verify` can redo it
    constructor = _constructor(spec)
    try:
        model = constructor(**kwargs)
    except Exception as exc:
        raise _weights_error(spec, weights, exc) from exc
    if kwargs["weights"] is None and spec.calibrate_random_batchnorm:
        calibrate_batchnorm(model, spec.preprocessing, seed)
    return model


def calibrate_batchnorm(model, mode, seed, batch=2):
    """Set each BatchNormalization's moving statistics from one batch of seeded random pixels.

    Keras's random init leaves them at mean 0 / variance 1, so nothing normalizes: in
    EfficientNetV2M/L activations then reach 1e6 to 1e10, and float32 rounding alone moves the
    output to cosine 0.6 (Keras against itself, with 1e-7 relative noise on the input).
    Calibrated, they stay in range and verification can tell a conversion defect from rounding.
    Only for the families the registry marks: calibrated deep ResNets turn chaotic instead
    (ResNet152's noise floor rises from 1e-6 to 1.4e-3), so the others keep Keras's own init.
    One forward pass in graph order, each layer calibrated on what the layers before it produce
    (data-dependent initialization).
    """
    import keras
    import tensorflow as tf

    from fexport.models import preprocessing

    if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        return
    shape = (batch, *model.input_shape[1:])
    pixels = np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)

    def calibrated(operation):
        if not isinstance(operation, keras.layers.BatchNormalization):
            return operation

        def call(x, **kwargs):
            axes = [i for i in range(len(x.shape)) if i != operation.axis % len(x.shape)]
            mean, variance = tf.nn.moments(x, axes=axes)
            operation.moving_mean.assign(mean)
            operation.moving_variance.assign(variance)
            return operation(x, training=False)
        return call

    # Keras 3.15's own graph walker (pinned), the one Functional.call uses.
    model._run_through_graph(tf.constant(preprocessing.apply(mode, pixels)),
                             operation_fn=calibrated)


def _keras_weights(weights):
    if weights in (None, "none"):
        return None
    if weights != "imagenet" and not os.path.exists(weights):
        raise WeightsUnavailableError(f"weights file {weights!r} does not exist; pass "
                                      "--weights imagenet, --weights none or an existing file")
    return weights


def _constructor(spec):
    module, _, name = spec.constructor.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _weights_error(spec, weights, exc):
    text = str(exc)
    url = re.search(r"https?://\S+?\.h5", text)
    if weights == "imagenet" and url:
        cached = keras_cache() / url.group(0).rsplit("/", 1)[-1]
        return WeightsUnavailableError(
            f"cannot download the imagenet weights of {spec.name} ({text.split(' -- ')[-1]}); "
            f"Keras looked for them in {cached}. Copy that file there, or pass --weights none "
            "(random init) or --weights PATH.")
    if isinstance(exc, ValueError):
        return UsageError(f"Keras cannot build {spec.name} this way: {whole_sentences(text)}")
    return ModelLoadError(f"building {spec.name} failed: {type(exc).__name__}: "
                          f"{whole_sentences(text)}")


def check_own_weights(weights, what) -> None:
    """--weights is for registry models: anything else carries its own."""
    if weights not in ("imagenet", "none", None):
        raise UsageError(f"--weights applies to registry models; {what} carries its own "
                         "weights")


def live_model(model):
    """An in-memory model as it is: no file, nothing copied."""
    try:
        model.inputs  # noqa: B018 - a Sequential without an Input has none until built
    except (AttributeError, ValueError) as exc:
        raise UsageError(f"the model {model.name!r} has no defined input yet; start it with "
                         "keras.Input(shape) or call it on a batch before exporting") from exc
    loader = "tf_keras" if type(model).__module__.startswith("tf_keras") else "keras"
    return model, Source(model.name, "memory", "in-memory", None, True, loader,
                         type(model).__name__)


def load_file(path, unsafe=False):
    """Try each loader that fits the file; one clear error naming every loader tried."""
    path = str(Path(path).resolve())
    _refuse_lambda(path, unsafe)
    failures = []
    for name, loader in _loaders_for(path):
        try:
            return loader(path, unsafe), Source(path, "file", "file", None, True, name)
        except Exception as exc:  # each loader fails in its own way; we report them all
            failures.append(f"{name}: {type(exc).__name__}: {whole_sentences(str(exc))}"
                            if str(exc) else f"{name}: {type(exc).__name__}")
    raise ModelLoadError(f"cannot load {path}; tried " + "; ".join(failures) +
                         ". Expected a Keras .keras file, a Keras 2/tf.keras .h5 file or a "
                         "TF 2.x Keras SavedModel directory.")


def _loaders_for(path):
    if os.path.isdir(path):
        return [("tf_keras", _tf_keras_load)]
    if path.endswith(".keras"):
        return [("keras", _keras_load)]
    return [("keras", _keras_load), ("tf_keras", _tf_keras_load)]


def _keras_load(path, unsafe):
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)


def _tf_keras_load(path, unsafe):
    import tf_keras

    return tf_keras.models.load_model(path, compile=False, safe_mode=not unsafe)


def _refuse_lambda(path, unsafe):
    """A Lambda layer runs the file's Python code: tf_keras runs an .h5's marshalled bytecode
    without asking, and Keras's own refusal of a .keras file is a paragraph that does not name
    --unsafe. We ask first, in one line, for both."""
    if unsafe or not os.path.isfile(path):
        return
    config = _h5_model_config(path) if path.endswith((".h5", ".hdf5")) else \
        _keras_zip_config(path) if path.endswith(".keras") else None
    if config and '"class_name": "Lambda"' in config.replace("'", '"'):
        raise ModelLoadError(
            f"{path} contains a Lambda layer, whose Python code fexport does not run by "
            "default (Keras safe mode). If you trust the file, pass --unsafe.")


def _keras_zip_config(path) -> str | None:
    """config.json of a .keras file (a zip archive), or None when it has none: the loader then
    says what is wrong with the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.dumps(json.loads(archive.read("config.json")))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None


def _h5_model_config(path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as exc:
        raise ModelLoadError(f"cannot load {path}: not a readable HDF5 file ({exc}); the file "
                             "may be truncated or not a Keras model") from exc
    if isinstance(config, bytes):
        config = config.decode("utf-8")
    return json.dumps(json.loads(config)) if config else None
