"""The KerasHub image families fexport exports, as data (no TensorFlow, no keras_hub).

Each names the KerasHub classes a preset of the family loads, the tokens that start its token
outputs, the heads that apply to its final output, and example preset names (`fexport SOURCE`
takes a preset name, a kaggle:// or hf:// handle, or a local preset directory). `tested` is
what tests/test_hub.py builds (tiny random configurations) and exports through the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubFamily:
    name: str
    classes: tuple[str, ...]  # the KerasHub backbone or task classes of its presets
    prefix_tokens: str  # what starts its token outputs; "-" for CNNs
    heads: tuple[str, ...]  # heads for its final (recommended) output
    cut_points: str  # how to name a cut
    presets: tuple[str, ...]  # examples (downloaded on first use)
    tested: str  # what the test suite exports


FAMILIES = (
    HubFamily("DINOv2", ("DINOV2Backbone",), "class + registers (0 or 4)",
              ("cls", "mean", "cls+mean", "flatten"), "block:K, stageK",
              ("dinov2_small", "dinov2_base", "dinov2_with_registers_small"),
              "tiny, with and without registers; DINOv2-S/14 at 224 (random weights)"),
    HubFamily("CLIP", ("CLIPBackbone", "CLIPVisionEncoder"), "class",
              ("pooled", "cls", "mean", "cls+mean", "flatten"), "block:K, encoder_block_N",
              ("clip_vit_base_patch16", "clip_vit_large_patch14"),
              "tiny CLIPBackbone (pooled = projected class token) and vision encoder"),
    HubFamily("SigLIP / SigLIP2", ("SigLIPBackbone", "SigLIPVisionEncoder"), "none",
              ("pooled", "mean", "flatten"), "block:K, encoder_block_N",
              ("siglip_base_patch16_224", "siglip2_base_patch16_224"),
              "tiny vision encoder (pooled = attention-pool head)"),
    HubFamily("ViT", ("ViTBackbone", "ViTImageClassifier"), "class",
              ("cls", "mean", "cls+mean", "flatten"), "block:K",
              ("vit_base_patch16_224_imagenet",), "tiny backbone and image classifier"),
    HubFamily("CNNs (ResNet, EfficientNet, ...)", ("ResNetBackbone", "ImageClassifier"), "-",
              ("avg", "max", "flatten"), "layer name, pyramid key (P2..P5)",
              ("resnet_50_imagenet", "efficientnet_b0_ra_imagenet"), "tiny ResNetBackbone"),
)
