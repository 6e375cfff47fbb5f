"""Fresh interpreters in which some installed packages cannot be imported, to stand for an
install without that extra: the import system refuses them as if they were absent."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError("No module named " + repr(name) + " (blocked by test)",
                                      name=name)

sys.meta_path.insert(0, _Blocked())
"""
CONVERSION_STACK = ("tensorflow", "keras", "tf_keras", "tf2onnx")
# What each install tier lacks, as import names.
BARE = (*CONVERSION_STACK, "onnxruntime", "onnx", "sympy", "sklearn", "pyarrow", "ray",
        "openvino")
CPU = tuple(m for m in BARE if m != "onnxruntime")
CPU_QUANTIZE = tuple(m for m in CPU if m not in ("onnx", "sympy"))


def run_python(blocked, code, timeout=600) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where the `blocked` packages cannot be imported."""
    source = BLOCKER.format(blocked=tuple(blocked)) + code
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=timeout)


def run_cli(blocked, *args, timeout=600) -> subprocess.CompletedProcess:
    """The real `fexport` CLI in an interpreter without the `blocked` packages."""
    argv = [str(a) for a in args]
    return run_python(blocked, f"from fexport.cli import main\nmain({argv!r})\n", timeout)
