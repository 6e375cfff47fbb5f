"""Optional dependencies: which extra brings each one, and the one way a missing one is reported.

`pip install fexport` alone gives the CLI's help, `models` and `doctor`. Everything else needs an
extra, and a missing one is always told the same way: one line naming the command that installs
it. Code that needs an optional package calls `require` instead of importing it directly; the
CLI's edge turns any other ModuleNotFoundError for these packages into the same message.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass

from fexport.errors import FexportError, whole_sentences


@dataclass(frozen=True)
class Extra:
    name: str
    adds: str  # what the extra makes possible, in the words of the commands
    modules: tuple[str, ...]  # import names that tell whether it is installed
    distribution: str | None = None  # checked instead, where the import name is ambiguous


EXTRAS = (
    Extra("cpu", "extract, info, bench, quantize on CPUs (ONNX Runtime)", ("onnxruntime",)),
    # onnxruntime-gpu is imported as onnxruntime too: only its distribution tells them apart.
    Extra("gpu", "the same on NVIDIA GPUs (onnxruntime-gpu with its CUDA and cuDNN wheels); "
                 "never beside cpu", (), "onnxruntime-gpu"),
    Extra("tensorrt", "--device tensorrt: TensorRT engines through onnxruntime-gpu (the gpu "
                      "extra with TensorRT 10's libraries)", ("tensorrt_libs",),
          "onnxruntime-gpu"),
    Extra("gpu-decode", "--decode gpu: JPEGs decoded on the GPU by nvImageCodec, batches kept "
                        "there for onnxruntime-gpu (the gpu extra with nvImageCodec)",
          ("nvidia.nvimgcodec",), "onnxruntime-gpu"),
    Extra("export", "export, layers, verify, bench --compare-keras (TensorFlow, Keras, tf2onnx)",
          ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx")),
    Extra("quantize", "quantize (INT8) and convert --fp16 without TensorFlow (onnx, sympy)",
          ("onnx", "sympy")),
    Extra("openvino", "backend openvino: bf16 and faster INT8 on CPUs (OpenVINO); NNCF's "
                      "INT8 for quantize and optimize; beside cpu",
          ("openvino", "nncf")),
    Extra("hub", "export and layers of KerasHub models: DINOv2, CLIP, SigLIP, ViT and its CNNs "
                 "(keras-hub, tensorflow-text)", ("keras_hub",)),
    Extra("parquet", "extract -o FILE.parquet (pyarrow)", ("pyarrow",)),
    Extra("sklearn", "fexport.runtime.ImageFeatures and the linear-probe accuracy "
                     "(scikit-learn)", ("sklearn",)),
    Extra("serve", "serve: the HTTP feature service (starlette, uvicorn, prometheus_client)",
          ("starlette", "uvicorn", "prometheus_client")),
    Extra("ray", "extract --engine ray (Ray Data), serve --engine ray (Ray Serve)",
          ("ray",)),
    Extra("bench", "the bench suite's chart (matplotlib)", ("matplotlib",)),
)
# The smallest extra that brings each package (onnxruntime's message names cpu and gpu both).
PROVIDED_BY = {"onnxruntime": "cpu", "tensorflow": "export", "keras": "export",
               "tf_keras": "export", "tf2onnx": "export", "onnx": "quantize",
               "sympy": "quantize", "pyarrow": "parquet", "sklearn": "sklearn", "ray": "ray",
               "openvino": "openvino", "nncf": "openvino", "matplotlib": "bench",
               "keras_hub": "hub", "starlette": "serve", "uvicorn": "serve",
               "prometheus_client": "serve", "tensorrt_libs": "tensorrt",
               "nvidia.nvimgcodec": "gpu-decode"}


class MissingDependencyError(FexportError, ImportError):
    """An optional package that this feature needs is not installed."""

    def __init__(self, module, purpose, extra, broken=None):
        self.module, self.extra = module, extra
        state = "which is not installed" if broken is None else \
            f"which is installed but does not import ({broken}); reinstall it"
        super().__init__(f"{purpose} needs {module}, {state}: {install_command(extra)}")


def install_command(extra) -> str:
    if extra == "cpu":  # what onnxruntime's absence asks for: the user picks the runtime
        return ('pip install "fexport[cpu]" (or "fexport[gpu]" on a machine with an NVIDIA '
                'GPU; never both)')
    return f'pip install "fexport[{extra}]"'


def require(module, purpose):
    """Import and return `module`, or raise MissingDependencyError naming the extra to install.

    `purpose` says what needs it, for the message: "fexport export", "INT8 quantization".
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = _missing_package(exc, module)
        if missing is None:
            raise  # not one of ours: its own error says more
        broken = None if isinstance(exc, ModuleNotFoundError) and not installed(missing) \
            else whole_sentences(str(exc))
        raise MissingDependencyError(missing, purpose, PROVIDED_BY[missing], broken) from exc


def _missing_package(exc, module) -> str | None:
    """The optional package whose absence `exc` reports, or None for another failure."""
    name = getattr(exc, "name", None) or module
    # No nvidia namespace at all reports "nvidia" missing: the package asked for is missing.
    return _known(module if module.startswith(f"{name}.") else name)


def _known(name: str) -> str | None:
    """`name` or its top-level package, whichever PROVIDED_BY knows: nvidia.nvimgcodec is
    known by its whole name (other nvidia.* packages are CUDA's libraries)."""
    for candidate in (name, name.split(".")[0]):
        if candidate in PROVIDED_BY:
            return candidate
    return None


def missing_message(exc) -> str | None:
    """For the CLI's edge: the install line for a ModuleNotFoundError of a known package."""
    name = _known(getattr(exc, "name", None) or "")
    if name is None:
        return None
    return (f"this command needs {name}, which is not installed: "
            f"{install_command(PROVIDED_BY[name])}")


def installed(module) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def status() -> list[tuple[Extra, list[str]]]:
    """Each extra with the packages of it that are missing (an empty list: installed)."""
    return [(extra, _missing_of(extra)) for extra in EXTRAS]


def _missing_of(extra) -> list[str]:
    missing = [m for m in extra.modules if not installed(m)]
    if extra.distribution and not _distribution_installed(extra.distribution):
        missing.append(extra.distribution)
    return missing


def _distribution_installed(name) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
