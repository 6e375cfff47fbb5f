"""What the timing core times: a named call from a batch of pixels to features.

Its own module so that the runtimes that make runners (core's ONNX Runtime and OpenVINO ones,
keras_side's Keras ones) import it, and the core imports them, with no arrow pointing back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Runner:
    name: str
    call: Callable[[np.ndarray], object]  # float32 NHWC RGB pixels 0..255 -> features
