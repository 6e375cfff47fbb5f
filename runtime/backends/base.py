"""What every backend offers: open a model file on a device at a precision, run a batch, and say
what really ran."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Ran:
    """What runs an opened model: the device and, on OpenVINO, the bf16/INT8 kernels are read
    back from the engine; ONNX Runtime's CPU kernels run the file's own precision."""

    backend: str  # "onnxruntime" or "openvino"
    device: str  # "cpu", "cuda" or "tensorrt"
    precision: str  # "fp32", "bf16", "int8", "fp16" or "int8-bf16" (float parts in bf16)

    def __str__(self) -> str:
        return f"{self.backend} {self.device} {self.precision}"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: str  # "tensor(float)", "tensor(uint8)"
    shape: list  # ints and, for dynamic dimensions, names or None


class Backend(abc.ABC):
    """One opened model. `run` is safe to call from several threads at once."""

    ran: Ran
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for one batch already in the model's input layout and dtype."""

    @abc.abstractmethod
    def bare_call(self) -> Callable[[np.ndarray], object]:
        """The engine's own API for one batch and nothing of fexport's around it, for one
        thread: what `fexport bench --backends all` times as "bare" beside `run`."""

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers, in order; none on another backend."""
        return []
