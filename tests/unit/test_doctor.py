"""runtime/doctor.py: what this install can do, every part of it checked against the
environment it describes."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import onnxruntime
import pytest

from fexport import extras
from fexport.runtime import doctor


def test_the_report_describes_this_install():
    found = doctor.report()
    assert [e.name for e in found.extras] == [e.name for e in extras.EXTRAS]
    for status, (extra, missing) in zip(found.extras, extras.status()):
        assert (status.adds, status.missing) == (extra.adds, missing)
    cpu_extra = next(e for e in found.extras if e.name == "cpu")
    assert cpu_extra.missing == []  # onnxruntime imports here
    assert found.onnxruntime["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in found.onnxruntime["providers"]
    assert found.cpu["usable_cores"] == len(os.sched_getaffinity(0))
    assert found.cpu["logical_cores"] == os.cpu_count()
    assert found.packages["fexport"] == importlib.metadata.version("fexport")
    assert found.packages["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert set(found.packages) == set(doctor.PACKAGES)


def test_each_cuda_library_loads_or_says_why_not():
    libraries = doctor.report().cuda_libraries
    assert list(libraries) == ["CUDA runtime", "cuBLAS", "cuDNN", "TensorRT"]
    for state in libraries.values():
        assert state.startswith(("loads from ", "not found: ")), state


def test_the_report_is_json_ready():
    data = json.loads(json.dumps(doctor.report().to_dict()))
    assert data["extras"][0]["name"] == "cpu" and "flags" in data["cpu"]


def test_loaded_from_finds_a_mapped_library():
    path = doctor.loaded_from("libc.so")  # every CPython on Linux maps libc
    assert path and os.path.basename(path).startswith("libc.so") and os.path.exists(path)
    assert doctor.loaded_from("libnothing-such.so") is None


def test_doctor_loads_tensorrt_from_its_pip_wheel_as_sessions_do(tmp_path):
    """The wheel puts libnvinfer.so.10 in site-packages/tensorrt_libs, off the loader's path;
    doctor preloads it as a TensorRT session does and names that file. A real shared library
    (built here, empty) stands in for TensorRT's, in a fresh interpreter."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in library")
    wheel = tmp_path / "tensorrt_libs"
    wheel.mkdir()
    (wheel / "__init__.py").write_text("")
    (tmp_path / "empty.c").write_text("int fexport_stand_in(void) { return 0; }\n")
    library = wheel / "libnvinfer.so.10"
    subprocess.run([compiler, "-shared", "-fPIC", "-Wl,-soname,libnvinfer.so.10", "-o",
                    str(library), str(tmp_path / "empty.c")], check=True)
    code = ("from fexport.runtime import doctor; "
            "print(doctor.report().cuda_libraries['TensorRT'])")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    line = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert line == f"loads from {library}"


def test_a_missing_tensorrt_names_the_extra():
    state = doctor.report().cuda_libraries["TensorRT"]
    if state.startswith("loads from"):
        pytest.skip("TensorRT loads here")
    assert state.endswith('device tensorrt needs it: pip install "fexport[tensorrt]", or use '
                          '--device cuda')
