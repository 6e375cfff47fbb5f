"""Every `keras.applications` backbone, as data.

`preprocessing` is the contract of the pretrained weights (timm's pretrained_cfg idea): the mode
Keras's own `preprocess_input` applies for that family, or "none" where the model normalizes
inside its graph. `feature_layer` is the output of the model built with `include_top=False`,
the recommended cut; None where Keras gives that layer an auto-generated name that changes with
the session (NASNet, MobileNetV3, ConvNeXt); fexport then takes the top-less model's output.
`top_layers` are the layers only the classifier top has: asking for one builds the model with
its top. `calibrate_random_batchnorm` marks the families whose Keras random init is too
ill-conditioned to verify (see exporter/load.py, calibrate_batchnorm).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str  # Keras's spelling, e.g. "VGG16"
    module: str  # the keras.applications module holding the constructor and preprocess_input
    input_size: tuple[int, int]
    preprocessing: str  # "caffe", "tf", "torch" or "none"
    feature_layer: str | None
    feature_dim: int  # channels of feature_layer
    top_layers: tuple[str, ...]
    calibrate_random_batchnorm: bool = False

    @property
    def constructor(self) -> str:
        return f"keras.applications.{self.name}"

    @property
    def preprocess_function(self) -> str:
        return f"keras.applications.{self.module}.preprocess_input"


_CLASSIC_TOP = ("avg_pool", "predictions")
_EFFICIENT_TOP = ("avg_pool", "top_dropout", "predictions")
_MOBILENET_V3_TOP = ("conv_2", "dropout", "logits", "flatten", "predictions")


def _family(module, preprocessing, feature_layer, top_layers, members, calibrate=False):
    """Specs for a family: members are (name, input side, feature dim)."""
    return [ModelSpec(name, module, (side, side), preprocessing, feature_layer, dim, top_layers,
                      calibrate) for name, side, dim in members]


def _convnext():
    sizes = (("Tiny", 768), ("Small", 768), ("Base", 1024), ("Large", 1536), ("XLarge", 2048))
    top = lambda size: tuple(f"convnext_{size.lower()}_head_{p}"  # noqa: E731
                             for p in ("gap", "layernorm", "dense"))
    return [ModelSpec(f"ConvNeXt{s}", "convnext", (224, 224), "none", None, dim, top(s))
            for s, dim in sizes]


SPECS: tuple[ModelSpec, ...] = tuple(
    _family("vgg16", "caffe", "block5_pool", ("flatten", "fc1", "fc2", "predictions"),
            [("VGG16", 224, 512)])
    + _family("vgg19", "caffe", "block5_pool", ("flatten", "fc1", "fc2", "predictions"),
              [("VGG19", 224, 512)])
    + _family("resnet", "caffe", "conv5_block3_out", _CLASSIC_TOP,
              [("ResNet50", 224, 2048), ("ResNet101", 224, 2048), ("ResNet152", 224, 2048)])
    + _family("resnet_v2", "tf", "post_relu", _CLASSIC_TOP,
              [("ResNet50V2", 224, 2048), ("ResNet101V2", 224, 2048), ("ResNet152V2", 224, 2048)])
    + _family("inception_v3", "tf", "mixed10", _CLASSIC_TOP, [("InceptionV3", 299, 2048)])
    + _family("inception_resnet_v2", "tf", "conv_7b_ac", _CLASSIC_TOP,
              [("InceptionResNetV2", 299, 1536)])
    + _family("xception", "tf", "block14_sepconv2_act", _CLASSIC_TOP, [("Xception", 299, 2048)])
    + _family("mobilenet", "tf", "conv_pw_13_relu",
              ("dropout", "conv_preds", "reshape_2", "predictions"), [("MobileNet", 224, 1024)])
    + _family("mobilenet_v2", "tf", "out_relu", ("predictions",), [("MobileNetV2", 224, 1280)])
    + _family("mobilenet_v3", "none", None, _MOBILENET_V3_TOP,
              [("MobileNetV3Small", 224, 576), ("MobileNetV3Large", 224, 960)])
    + _family("densenet", "torch", "relu", _CLASSIC_TOP,
              [("DenseNet121", 224, 1024), ("DenseNet169", 224, 1664), ("DenseNet201", 224, 1920)])
    + _family("nasnet", "tf", None, ("predictions",),
              [("NASNetMobile", 224, 1056), ("NASNetLarge", 331, 4032)])
    + _family("efficientnet", "none", "top_activation", _EFFICIENT_TOP,
              [("EfficientNetB0", 224, 1280), ("EfficientNetB1", 240, 1280),
               ("EfficientNetB2", 260, 1408), ("EfficientNetB3", 300, 1536),
               ("EfficientNetB4", 380, 1792), ("EfficientNetB5", 456, 2048),
               ("EfficientNetB6", 528, 2304), ("EfficientNetB7", 600, 2560)])
    + _family("efficientnet_v2", "none", "top_activation", _EFFICIENT_TOP,
              [("EfficientNetV2B0", 224, 1280), ("EfficientNetV2B1", 240, 1280),
               ("EfficientNetV2B2", 260, 1408), ("EfficientNetV2B3", 300, 1536),
               ("EfficientNetV2S", 384, 1280), ("EfficientNetV2M", 480, 1280),
               ("EfficientNetV2L", 480, 1280)], calibrate=True)
    + _convnext()
)
