"""The runtime half never imports the conversion stack: proven in a fresh interpreter."""

import subprocess
import sys

BLOCKED = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "ray")  # ray: only on use

PROBE = f"""
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked by test: " + name)

sys.meta_path.insert(0, Block())
import fexport.runtime, fexport.models, fexport.runtime.sinks, fexport.runtime.doctor
import fexport.runtime.ray_engine
import fexport.cli
from fexport.runtime import FeatureExtractor
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
print("LOADED", loaded)
"""


def test_runtime_models_and_cli_import_without_the_conversion_stack():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_block_really_blocks():
    """The probe's blocker works: importing tensorflow under it fails."""
    proc = subprocess.run([sys.executable, "-c", PROBE + "\nimport tensorflow\n"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked by test: tensorflow" in proc.stderr
