"""The runtime half never imports the conversion stack, and `import fexport` imports neither
TensorFlow nor an inference engine: proven in fresh interpreters."""

import blocking

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "nncf", "ray",
         "openvino")  # on use

RUNTIME_PROBE = f"""
import fexport.runtime, fexport.models, fexport.runtime.files.sinks, fexport.runtime.doctor
import fexport.runtime.engines.ray_engine
import fexport.serve.app, fexport.serve.local, fexport.serve.triton, fexport.serve.ray_serve
import fexport.cli
from fexport.runtime import FeatureExtractor
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print("LOADED", loaded)
"""


def test_runtime_models_and_cli_import_without_the_conversion_stack():
    proc = blocking.run_python(HEAVY, RUNTIME_PROBE)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_import_fexport_and_the_cli_load_no_engine_and_no_tensorflow():
    """Nothing is blocked here: whatever is installed, importing fexport, its CLI and the
    names of its Python API loads none of it (they load when a function runs)."""
    probe = ("import fexport, fexport.cli, fexport.runtime, fexport.extras\n"
             "api = (fexport.export, fexport.layers, fexport.FeatureExtractor, "
             "fexport.extract_to_file)\n"
             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
             f"{(*HEAVY, 'onnxruntime', 'sklearn', 'pyarrow', 'starlette', 'uvicorn')!r}))\n")
    proc = blocking.run_python((), probe)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_block_really_blocks():
    """The probe's blocker works: importing tensorflow under it fails."""
    proc = blocking.run_python(HEAVY, "import tensorflow\n")
    assert proc.returncode != 0 and "blocked by test" in proc.stderr
