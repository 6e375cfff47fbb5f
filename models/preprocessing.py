"""The preprocessing modes of `keras.applications`, named once.

Each mode maps RGB pixel values 0..255 (channels last) to what a network was trained on. The
constants here are the only copy: the runtime applies them with numpy when a model was exported
without baked preprocessing, and the exporter bakes the same numbers into the graph.
"""

import numpy as np

MODES = ("caffe", "tf", "torch", "scale_offset", "none")

# caffe: RGB -> BGR, then subtract the ImageNet mean per BGR channel; no scaling.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# tf: scale to [-1, 1].
TF_SCALE, TF_OFFSET = 127.5, 1.0
# torch: scale to [0, 1], then standardize per RGB channel with ImageNet statistics.
TORCH_SCALE = 255.0
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)

# scale_offset: KerasHub's ImageConverter, x * scale + offset, with one number or one per channel
# each (the model's own, recorded in the contract as preprocessing_scale / preprocessing_offset).

# Modes that index colour channels only make sense for RGB input.
RGB_ONLY = ("caffe", "torch")


def check_mode(mode: str, channels: int) -> None:
    from fexport.errors import UsageError

    if mode not in MODES:
        raise UsageError(f"unknown preprocessing mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode in RGB_ONLY and channels != 3:
        raise UsageError(
            f"preprocessing {mode!r} needs 3 (RGB) channels, but the model takes {channels}. "
            "Use --preprocess tf or --preprocess none for grayscale models.")


def apply(mode: str, x: np.ndarray, scale=None, offset=None) -> np.ndarray:
    """Apply `mode` to float32 NHWC pixels, the way Keras's `preprocess_input` (or, for
    scale_offset, KerasHub's ImageConverter with these `scale` and `offset`) does."""
    x = np.asarray(x, dtype=np.float32)
    if mode == "scale_offset":
        x = x * np.asarray(scale, np.float32) if scale else x
        return x + np.asarray(offset, np.float32) if offset else x
    if mode == "caffe":
        return x[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, np.float32)
    if mode == "tf":
        return x / np.float32(TF_SCALE) - np.float32(TF_OFFSET)
    if mode == "torch":
        x = x / np.float32(TORCH_SCALE) - np.asarray(TORCH_RGB_MEAN, np.float32)
        return x / np.asarray(TORCH_RGB_STD, np.float32)
    return x
