"""KerasHub models as fexport sources: presets (a handle or a local directory) and live objects.

A KerasHub model becomes its image side, one functional Keras model that the rest of the
exporter cuts like any other:

- a task is reduced to its backbone (ImageClassifier) or its vision half (CLIPBackbone:
  the vision encoder, its class-token pooler and projection; SigLIPBackbone: the vision
  encoder, whose last layer is the attention-pool head);
- a transformer whose encoder is one Keras layer (ViT, DINOv2) is unrolled, block by block, into
  a flat model of the same layers (the same weights), so each block has an output to cut at;
- `points` names the cut points a user can ask for: `block:K` (the output of the K-th encoder
  block, 1-based; negative counts from the end) and the backbone's own `pyramid_outputs` keys.

Token outputs (N, T, D) start with `prefix_tokens` class and register tokens (DINOv2: 1 + its
registers; SigLIP: none), which the token heads (exporter/heads.py) need to know.

The preprocessing is the preset's ImageConverter: its scale and offset go into the graph, its
resize (size, interpolation, antialias, crop) into the contract, for the runtime's loader.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from fexport.errors import ModelLoadError, UsageError, WeightsUnavailableError, whole_sentences
from fexport.extras import require

from .hub_cuts import BLOCK_PREFIX

PRESET_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")
PRESET_FILES = ("config.json", "model.weights.h5")  # what save_to_preset writes, at least


@dataclass(frozen=True)
class Resize:
    """How an ImageConverter resizes, for the runtime's loader (keras.ops.image.resize)."""

    interpolation: str = "bilinear"
    antialias: bool = False
    crop_to_aspect_ratio: bool = True

    def to_dict(self) -> dict:
        return {"interpolation": self.interpolation, "antialias": self.antialias,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio}


@dataclass
class Converter:
    """A KerasHub ImageConverter as fexport uses it: x * scale + offset after the resize."""

    scale: list[float] | None  # one number, or one per channel; None: 1
    offset: list[float] | None  # None: 0
    image_size: tuple[int, int] | None  # (height, width) it resizes to; None: no resize
    resize: Resize = field(default_factory=Resize)
    layer: object = None  # the KerasHub ImageConverter itself, Keras's side of verification


@dataclass
class ImageSide:
    """The image side of a KerasHub model, flat, with what the heads and cuts need."""

    model: object  # a functional keras.Model: images -> the backbone's (or pooled) output
    family: str  # the KerasHub class it came from ("DINOV2Backbone", "CLIPBackbone", ...)
    prefix_tokens: int | None  # class + register tokens; None: not a token model (a CNN)
    tokens_layer: str | None  # the layer whose output is the final tokens
    pooled_layer: str | None  # the layer giving the model's own pooled embedding, or None
    points: dict[str, str]  # cut point ("block:3", "stage3", "P4") -> layer name
    converter: Converter | None
    name: str  # the preset handle, directory or the live model's name
    # Each step's output in `model`'s graph: a flattened model's layers also belong to the
    # original backbone's graph, so their `layer.output` is the backbone's, not this one.
    tensors: dict = field(default_factory=dict)


def keras_hub():
    return require("keras_hub", "a KerasHub model (presets, DINOv2, CLIP, SigLIP, ViT)")


def is_hub_object(source) -> bool:
    """A live KerasHub backbone or task, without importing keras_hub for anything else."""
    return any(cls.__module__.startswith("keras_hub.") for cls in type(source).__mro__)


def is_preset_directory(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.path.isdir(source) and all(
        os.path.isfile(os.path.join(source, name)) for name in PRESET_FILES)


def is_preset_handle(source) -> bool:
    return isinstance(source, str) and source.startswith(PRESET_SCHEMES)


def is_preset_name(source) -> bool:
    """A KerasHub preset name ("dinov2_small"): only asked when the registry has no such name."""
    from fexport.extras import installed

    if not isinstance(source, str) or not installed("keras_hub"):
        return False
    return source in keras_hub().models.Backbone.presets


def is_hub_source(source) -> bool:
    return is_hub_object(source) or is_preset_directory(source) or is_preset_handle(source)


def load(source) -> ImageSide:
    """The image side of a KerasHub preset (handle, name or directory) or live object."""
    if is_hub_object(source):
        return image_side(source, converter_of(source), source.name)
    task_or_backbone, converter = _from_preset(str(source))
    return image_side(task_or_backbone, converter, str(source))


def _from_preset(preset):
    hub = keras_hub()
    try:
        backbone = hub.models.Backbone.from_preset(preset)
    except Exception as exc:  # download, file and config errors all end up here
        raise _preset_error(preset, exc) from exc
    return backbone, _converter(_image_converter(preset, hub))


def _image_converter(preset, hub):
    """The preset's ImageConverter, or None. A local preset's is read from its own file: from
    there `ImageConverter.from_preset` finds only converter classes registered for the
    backbone's class (none for a bare SigLIPVisionEncoder)."""
    import keras

    if os.path.isdir(preset):
        path = os.path.join(preset, "image_converter.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return keras.saving.deserialize_keras_object(json.load(f))
    try:
        return hub.layers.ImageConverter.from_preset(preset)
    except ValueError:  # the preset has no converter for this class
        return None


def _preset_error(preset, exc):
    text = whole_sentences(str(exc))
    if os.path.isdir(preset):
        return ModelLoadError(f"cannot load the KerasHub preset directory {preset}: "
                              f"{type(exc).__name__}: {text}. Expected config.json and "
                              "model.weights.h5 as keras_hub's save_to_preset writes them.")
    return WeightsUnavailableError(
        f"cannot load the KerasHub preset {preset!r} ({type(exc).__name__}: {text}). Presets "
        "are downloaded from Kaggle or Hugging Face on first use; without network, download "
        "it elsewhere, copy the directory here and pass its path.")


def converter_of(model):
    """The ImageConverter of a live task's preprocessor, or None (a bare backbone has none)."""
    preprocessor = getattr(model, "preprocessor", None)
    return _converter(getattr(preprocessor, "image_converter", None))


def _converter(layer) -> Converter | None:
    if layer is None:
        return None
    if getattr(layer, "pad_to_aspect_ratio", False):
        raise UsageError("the preset's ImageConverter pads to the aspect ratio, which fexport's "
                         "loader does not reproduce; export the backbone and preprocess yourself")
    resize = Resize(layer.interpolation, bool(layer.antialias), bool(layer.crop_to_aspect_ratio))
    size = tuple(int(d) for d in layer.image_size) if layer.image_size else None
    return Converter(_numbers(layer.scale), _numbers(layer.offset), size, resize, layer)


def _numbers(value) -> list[float] | None:
    if value is None:
        return None
    import numpy as np

    return [float(v) for v in np.ravel(np.asarray(value, dtype=np.float64))]


def image_side(model, converter, name) -> ImageSide:
    """Reduce a task to its image backbone and flatten it (see the module's docstring)."""
    hub = keras_hub().models
    family = type(model).__name__
    if isinstance(model, hub.Task):
        converter = converter or converter_of(model)
        model = model.backbone
        family = type(model).__name__
    for builder in _BUILDERS:
        side = builder(model, hub)
        if side is not None:
            flat, prefix, tokens, pooled, points, tensors = side
            return ImageSide(flat, family, prefix, tokens, pooled, points, converter, name,
                             tensors)
    raise UsageError(f"{family} is not an image model fexport can export; expected a KerasHub "
                     "image backbone or task (DINOv2, ViT, CLIP, SigLIP, ResNet, ...)")


def _flat(image_shape, steps, pooled_steps=()):
    """A functional model that calls `steps` in order (then `pooled_steps`) on a new input:
    the same layers, so the same weights, with every step's output reachable for a cut."""
    import keras

    images = keras.Input(shape=tuple(image_shape), name="images")
    x, tensors = images, {}
    for step in [*steps, *pooled_steps]:
        x = tensors[step.name] = step(x)
    return keras.Model(images, x, name="fexport_hub_image_side"), tensors


def _transformer(image_shape, steps, blocks, prefix, pooled_steps=()):
    """The ImageSide fields of a flattened transformer whose encoder blocks are `blocks`."""
    model, tensors = _flat(image_shape, steps, pooled_steps)
    points = {f"{BLOCK_PREFIX}{k}": block.name for k, block in enumerate(blocks, start=1)}
    points.update({f"stage{k}": block.name for k, block in enumerate(blocks, start=1)})
    pooled = pooled_steps[-1].name if pooled_steps else None
    return model, prefix, steps[-1].name, pooled, points, tensors


def _vit(model, hub):
    if not isinstance(model, hub.ViTBackbone):
        return None
    embedding, encoder = model.layers[1], model.layers[2]
    steps = [embedding, encoder.dropout, *encoder.encoder_layers, encoder.layer_norm]
    prefix = 1 if embedding.use_class_token else 0
    return _transformer(model.input_shape[1:], steps, encoder.encoder_layers, prefix)


def _dinov2(model, hub):
    if not isinstance(model, hub.DINOV2Backbone):
        return None
    blocks = list(model.encoder.layers)
    steps = [model.embeddings, *blocks, model.layernorm]
    prefix = 1 + int(model.num_register_tokens)
    return _transformer(model.input_shape[1:], steps, blocks, prefix)


def _clip(model, hub):
    encoder = model.vision_encoder if isinstance(model, hub.CLIPBackbone) else model
    if not isinstance(encoder, hub.CLIPVisionEncoder):
        return None
    blocks = list(encoder.encoder_layers)
    steps = [encoder.embedding, encoder.pre_layer_norm, *blocks, encoder.layer_norm]
    # CLIP's image embedding is its projected class token (CLIPBackbone.get_vision_embeddings);
    # a bare vision encoder has no projection, so its pooled output would be the cls head.
    pooled = [model.vision_pooler, model.vision_projection] if encoder is not model else []
    return _transformer(encoder.image_shape, steps, blocks, 1, pooled)


def _siglip(model, hub):
    encoder = model.vision_encoder if isinstance(model, hub.SigLIPBackbone) else model
    if not isinstance(encoder, hub.SigLIPVisionEncoder):
        return None
    blocks = list(encoder.encoder_layers)
    steps = [encoder.embedding, *blocks, encoder.post_layer_norm]
    # SigLIP has no class token; its image embedding is the attention-pool head's output.
    return _transformer(encoder.image_shape, steps, blocks, 0, [encoder.head])


def _cnn(model, hub):
    """Any other image backbone (ResNet, EfficientNet, ...): already flat, cut by layer name
    or by its pyramid_outputs keys."""
    if not isinstance(model, hub.Backbone) or len(model.inputs) != 1 \
            or len(model.inputs[0].shape) != 4:
        return None
    pyramid = getattr(model, "pyramid_outputs", None) or {}
    points = {key: tensor._keras_history[0].name for key, tensor in pyramid.items()}
    return model, None, None, None, points, {}


_BUILDERS = (_vit, _dinov2, _clip, _siglip, _cnn)


def is_wanted(source) -> bool:
    """Whether `source` names a KerasHub model: a live object, a preset directory or handle,
    or a preset name that is neither a file nor a registry name (the registry wins)."""
    from fexport import models

    if is_hub_source(source):
        return True
    if not isinstance(source, str) or os.path.exists(source) or models.find(source):
        return False
    return is_preset_name(source)
