"""fexport/extras.py: which extra brings each optional package, and the one message that says
how to install a missing one."""

import json
import sys

import pytest

from fexport import extras
from fexport.extras import MissingDependencyError


def test_require_returns_the_module():
    assert extras.require("json", "reading JSON") is json


def test_a_missing_optional_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # Python's own "cannot be imported"
    with pytest.raises(MissingDependencyError) as caught:
        extras.require("tf2onnx", "fexport export")
    assert str(caught.value) == ('fexport export needs tf2onnx, which is not installed: '
                                 'pip install "fexport[export]"')
    assert (caught.value.module, caught.value.extra) == ("tf2onnx", "export")


def test_a_submodule_names_the_package_it_belongs_to(monkeypatch):
    # Both names: another test may have imported pyarrow.parquet in this process already.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r'needs pyarrow, .*fexport\[parquet\]'):
        extras.require("pyarrow.parquet", "writing .parquet")


def test_an_installed_package_that_does_not_import_says_reinstall(tmp_path, monkeypatch):
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libfoo.so: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    with pytest.raises(MissingDependencyError) as caught:
        extras.require("ray", "extract --engine ray")
    assert "which is installed but does not import (libfoo.so: cannot open); reinstall it" \
        in str(caught.value)
    assert str(caught.value).endswith('pip install "fexport[ray]"')


def test_other_import_errors_are_left_alone():
    with pytest.raises(ModuleNotFoundError) as caught:
        extras.require("no_such_module_fexport", "a test")
    assert not isinstance(caught.value, MissingDependencyError)


def test_onnxruntime_asks_for_cpu_or_gpu(monkeypatch):
    assert "fexport[gpu]" in extras.install_command("cpu") and "never both" in \
        extras.install_command("cpu")
    assert extras.install_command("ray") == 'pip install "fexport[ray]"'


def test_the_clis_message_for_a_missing_module():
    assert extras.missing_message(ModuleNotFoundError("x", name="tensorflow.keras")) == \
        'this command needs tensorflow, which is not installed: pip install "fexport[export]"'
    assert extras.missing_message(ModuleNotFoundError("x", name="numpy")) is None
    assert extras.missing_message(ModuleNotFoundError("x")) is None


def test_installed_does_not_import():
    assert extras.installed("json") and not extras.installed("no_such_module_fexport")
    assert not extras.installed("")  # find_spec refuses an empty name: not installed


def test_every_package_maps_to_an_extra_that_lists_it():
    names = {extra.name: extra for extra in extras.EXTRAS}
    for module, extra in extras.PROVIDED_BY.items():
        assert module in names[extra].modules, (module, extra)
    for extra in extras.EXTRAS:
        for module in extra.modules:
            assert module in extras.PROVIDED_BY


def test_status_lists_each_extra_with_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)
    status = dict((extra.name, missing) for extra, missing in extras.status())
    assert list(status) == [extra.name for extra in extras.EXTRAS]
    assert status["cpu"] == []  # the unit layer runs on onnxruntime
    assert "sympy" in status["quantize"]


def test_the_tensorrt_extra_is_the_gpu_extra_with_tensorrt_10_for_the_same_cuda():
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    wanted = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    runtime, libraries = wanted["tensorrt"]
    assert runtime.startswith("onnxruntime-gpu[cuda,cudnn]>=1.27")  # the CUDA 13 builds
    # TensorRT 10 (libnvinfer.so.10, what the provider links) for CUDA 13, as onnxruntime-gpu.
    assert libraries == "tensorrt-cu13-libs>=10.13.2,<11"
    extra = next(e for e in extras.EXTRAS if e.name == "tensorrt")
    assert extra.modules == ("tensorrt_libs",) and extra.distribution == "onnxruntime-gpu"
