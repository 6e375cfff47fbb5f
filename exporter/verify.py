"""Check an exported model against Keras on the same inputs, one line per check.

The reference is Keras itself: Keras's own `preprocess_input`, the cut Keras model's `predict`
and the numpy heads. The candidate is the ONNX file in an onnxruntime session, fed through the
runtime's own input conversion. A shape mismatch fails whatever the tolerances.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from fexport import comparison
from fexport.comparison import EXPORT_MAX_REL, EXPORT_MIN_COSINE
from fexport.reports import DEFECT, CheckResult, NoiseFloor, VerificationReport
from fexport.runtime.contract import to_model_input
from fexport.runtime.files import images

from . import heads, layouts

RANDOM_BATCHES = (1, 3)
IMAGE_BATCH = 8


@dataclass
class Reference:
    """Everything needed to compute Keras's answer for a batch of RGB pixel values."""

    cut_model: object
    preprocess: object  # float32 NHWC pixels -> network input, Keras's own function
    head: str
    flatten_order: str
    layout: layouts.ModelLayout  # the model's own input layout, where Keras is fed
    prefix_tokens: int = 0  # class + register tokens, for the token heads
    normalize: str | None = None
    converter: object = None  # a KerasHub ImageConverter that resizes: checked on photos

    def network_input(self, pixels: np.ndarray) -> np.ndarray:
        """NHWC RGB pixels 0..255 as the Keras model takes them: preprocessed, in its layout."""
        return images.from_nhwc(self.preprocess(pixels.copy()), self.layout.input)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        outputs = self.cut_model.predict(self.network_input(pixels), verbose=0,
                                         batch_size=IMAGE_BATCH)
        return self.apply_head(outputs)

    def apply_head(self, outputs) -> np.ndarray:
        """The head in numpy on the cut model's output(s), joined as the ONNX graph joins them."""
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        parts = [heads.apply_numpy(self.head, layouts.output_to_channels_last(
            np.asarray(o), self.layout), self.flatten_order, self.prefix_tokens)
            for o in outputs]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return heads.normalize_numpy(self.normalize, joined)

    def features_from_files(self, paths) -> np.ndarray:
        """KerasHub's own pipeline on image files: load_img at full size, the converter (its
        resize, scale and offset), the model: what `FeatureExtractor` on files must match."""
        import keras

        batch = np.stack([np.asarray(self.converter(keras.utils.img_to_array(
            keras.utils.load_img(p)))) for p in paths])
        outputs = self.cut_model.predict(images.from_nhwc(batch, self.layout.input),
                                         verbose=0, batch_size=IMAGE_BATCH)
        return self.apply_head(outputs)


def keras_preprocess(mode, registry_spec=None):
    """Keras's own preprocess_input for `mode`, the function a Keras user would call."""
    if mode == "none":
        return lambda x: x
    if registry_spec is not None and registry_spec.preprocessing == mode:
        module, _, name = registry_spec.preprocess_function.rpartition(".")
        return getattr(importlib.import_module(module), name)
    from keras.applications import imagenet_utils

    return lambda x: imagenet_utils.preprocess_input(x, mode=mode)


def hub_preprocess(converter):
    """A KerasHub ImageConverter's scale and offset, by the converter's own code: a copy of it
    without its resize (images reach the reference at the model's size already)."""
    config = dict(converter.get_config(), image_size=None)
    unresized = type(converter).from_config(config)
    return lambda x: np.asarray(unresized(x))



def verification_inputs(contract, image_paths=(), seed=0):
    """(label, float32 NHWC pixels) pairs: random batches, then real images in batches."""
    spec = contract.input
    rng = np.random.default_rng(seed)
    sizes = (spec.batch,) if spec.batch else RANDOM_BATCHES
    for n in sizes:
        shape = (n, spec.height, spec.width, spec.channels)
        yield f"random pixels, batch {n}", rng.integers(0, 256, shape).astype(np.float32)
    options = load_options(contract)
    step = spec.batch or IMAGE_BATCH
    for start in range(0, len(image_paths), step):
        chunk = image_paths[start:start + step]
        pixels = np.stack([images.load(p, options) for p in chunk])
        yield f"images {start + 1}-{start + len(chunk)}", fit_batch(pixels, spec.batch)


def fit_batch(pixels: np.ndarray, batch) -> np.ndarray:
    """Pixels padded with black images up to a pinned batch size (None: as they are)."""
    if not batch or len(pixels) >= batch:
        return pixels
    padding = np.zeros((batch - len(pixels), *pixels.shape[1:]), pixels.dtype)
    return np.concatenate([pixels, padding])


def load_options(contract) -> images.LoadOptions:
    """How verification (and, by default, the runtime) loads image files for this contract."""
    from fexport.runtime.extractor import load_options_for

    return load_options_for(contract)


def run_onnx(session, contract, pixels) -> np.ndarray:
    feed = {contract.input.name: to_model_input(contract, pixels)}
    return np.asarray(session.run([contract.output_name], feed)[0])


def verify(session, contract, reference, image_paths=(), rtol=EXPORT_MAX_REL,
           min_cosine=EXPORT_MIN_COSINE) -> VerificationReport:
    """Compare every verification input; one check each."""
    checks = [check_one(label, pixels, session, contract, reference, rtol, min_cosine)
              for label, pixels in verification_inputs(contract, list(image_paths))]
    if reference.converter is not None and image_paths:
        checks += pipeline_checks(session, contract, reference, list(image_paths), rtol,
                                  min_cosine)
    return VerificationReport(tuple(checks), max_rel_allowed=rtol, min_cosine_required=min_cosine)


def pipeline_checks(session, contract, reference, paths, rtol, min_cosine) -> list:
    """Photos at their own sizes: fexport's loader (the contract's resize) and the ONNX file
    against KerasHub's converter and model, so the resize is verified with the rest."""
    options, step, checks = load_options(contract), contract.input.batch or IMAGE_BATCH, []
    for start in range(0, len(paths), step):
        chunk = paths[start:start + step]
        pixels = fit_batch(np.stack([images.load(p, options) for p in chunk]),
                           contract.input.batch)
        label = f"images {start + 1}-{start + len(chunk)} resized by fexport and by KerasHub"
        actual = run_onnx(session, contract, pixels)[:len(chunk)]
        checks.append(comparison.check(label, reference.features_from_files(chunk), actual, rtol,
                              min_cosine))
    return checks


def check_one(label, pixels, session, contract, reference, rtol, min_cosine) -> CheckResult:
    expected = reference.features(pixels)
    check = comparison.check(label, expected, run_onnx(session, contract, pixels), rtol,
                             min_cosine)
    if check.outcome != DEFECT:
        return check
    noise = np.random.default_rng(0).standard_normal(pixels.shape) * comparison.INPUT_NOISE
    itself = comparison.check(label, expected, reference.features(pixels * (1 + noise)), rtol,
                              min_cosine)
    floor = NoiseFloor(comparison.INPUT_NOISE, itself.max_rel, itself.min_cosine)
    return comparison.judge_by_noise_floor(check, floor)
