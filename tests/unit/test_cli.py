"""The fexport command line in a fresh interpreter: help, the registry, an ONNX file's
contract, the install report, and one-line errors with their exit statuses."""

import json
import subprocess
import sys

from fexport import models
from fexport.models.hub_families import FAMILIES
from unit.conftest import TINY


def fexport(*args):
    return subprocess.run([sys.executable, "-m", "fexport", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    proc = fexport("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("export", "extract", "info", "doctor", "models", "quantize"):
        assert command in proc.stdout


def test_models_lists_every_backbone():
    proc = fexport("models")
    assert proc.returncode == 0, proc.stderr
    applications, hub = proc.stdout.split("\n\n")
    lines = applications.splitlines()
    assert len(lines) == len(models.SPECS)
    assert lines[0].split() == ["VGG16", "224x224", "caffe", "block5_pool", "512"]
    listed = json.loads(fexport("models", "--json").stdout)
    assert [spec["name"] for spec in listed] == models.names()
    assert len(hub.splitlines()) == 1 + len(FAMILIES) and "dinov2_small" in hub
    families = json.loads(fexport("models", "--hub", "--json").stdout)
    assert [f["name"] for f in families] == [f.name for f in FAMILIES]


def test_info_prints_the_tiny_models_contract():
    proc = fexport("info", TINY)
    assert proc.returncode == 0, proc.stderr
    assert "input   images: tensor(float) ['N', 16, 16, 3]" in proc.stdout
    assert "output  features: tensor(float) ['N', 4]" in proc.stdout
    assert 'source               "tiny_features"' in proc.stdout
    data = json.loads(fexport("info", TINY, "--json").stdout)
    assert data["contract"]["feature_dim"] == 4 and data["contract"]["head"] == "avg"
    assert data["inputs"][0]["name"] == "images"


def test_info_on_a_file_made_elsewhere_asks_for_the_input_size(plain_model):
    proc = fexport("info", plain_model)
    assert proc.returncode == 0, proc.stderr
    assert "no fexport metadata: pass --input-size H W" in proc.stdout


def test_doctor_reports_json():
    proc = fexport("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "CPUExecutionProvider" in data["onnxruntime"]["providers"]


def test_errors_are_one_line_with_their_exit_status(tmp_path):
    missing = fexport("info", tmp_path / "none.onnx")
    assert missing.returncode == 1
    assert missing.stderr == f"fexport: error: {tmp_path / 'none.onnx'}: no such model file\n"
    usage = fexport("extract", TINY, tmp_path, "-o", tmp_path / "f.txt")
    assert usage.returncode == 2
    assert usage.stderr.startswith("fexport: error: output ") and "unknown format .txt" in \
        usage.stderr
    unknown_option = fexport("info", "--no-such-option")
    assert unknown_option.returncode == 2


def test_every_command_summary_is_one_line_that_fits_the_list():
    """The first paragraph of each command's docstring is what `fexport --help` lists: one
    sentence on one line, so the list never breaks it mid-sentence."""
    from fexport.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        summary = (command.callback.__doc__ or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, (name, summary)
        assert len(summary) <= 88 and summary.endswith("."), (name, summary)


# The CLI's words for ExportOptions fields that it spells another way.
CLI_NAME = {"layers": "layer", "verify": "no_verify", "bake_preprocessing": "no_preprocess"}


def test_every_export_option_is_on_the_cli_with_the_librarys_default():
    """ExportOptions is the one definition: the CLI offers each field, with its default (or
    None, where the exporter decides from the model), and the API's docstring names it."""
    import dataclasses
    import inspect

    from fexport import api
    from fexport.cli import export as cli_export
    from fexport.export_options import ExportOptions

    parameters = inspect.signature(cli_export.export).parameters
    for option in dataclasses.fields(ExportOptions):
        if option.name == "source":
            continue
        name = CLI_NAME.get(option.name, option.name)
        assert name in parameters, f"fexport export has no option for {option.name}"
        default = parameters[name].default
        library = getattr(ExportOptions, option.name, None)  # None: a factory's list
        flag = name in CLI_NAME.values()  # --layer (repeatable), --no-verify, --no-preprocess
        assert flag or default in (None, library), f"--{name}: {default!r}, not {library!r}"
        documented = option.name in api.export.__doc__ or \
            {option.name, name} & set(inspect.signature(api.export).parameters)
        assert documented, f"fexport.export() neither takes nor documents {option.name}"
