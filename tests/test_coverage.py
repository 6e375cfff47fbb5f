"""keras.applications coverage: a representative subset here, the whole registry in the sweep.

The full matrix (40 models x avg/flatten) takes about an hour on 2 cores, so it runs as
`python -m fexport.bench.sweep`, which commits its table to bench/results/sweep.{json,md}. This
file exports one model per family that exercises a distinct conversion path and checks that the
committed sweep covers, and passes, every registered model.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from fexport import models
from fexport.bench import sweep
from fexport.runtime import FeatureExtractor

SWEEP = Path(sweep.RESULTS) / "sweep.json"

# One model per conversion path not covered elsewhere (VGG16, ResNet50 and MobileNetV2 are
# exported by test_cli_export.py and test_extract.py).
SUBSET = {
    "ConvNeXtTiny": "grouped conv traced without XLA, exact GELU's Erfc, captured constants",
    "EfficientNetB0": "Rescaling + Normalization inside the model, SiLU, squeeze-excite",
    "MobileNetV3Small": "hard-swish, auto-generated layer names, built-in rescaling",
    "NASNetMobile": "auto-generated names, separable convs, cropping and padding",
    "DenseNet121": "concatenations, torch preprocessing",
}


@pytest.mark.parametrize("name", sorted(SUBSET))
def test_family_exports_and_verifies(name, tmp_path, photo_paths):
    row = sweep.export_row(name, "avg", tmp_path)  # what the sweep runs, in this process
    assert row["passed"], row.get("error")
    assert row["max_rel"] <= 1e-4 and row["feature_dim"] == models.get(name).feature_dim
    exported = tmp_path / f"{name}_avg.onnx"
    features = FeatureExtractor(exported, device="cpu").extract(photo_paths[:3])
    assert features.shape == (3, row["feature_dim"]) and np.isfinite(features).all()


def committed_rows():
    return {(r["model"], r["head"]): r for r in json.loads(SWEEP.read_text())["rows"]}


def test_every_registered_model_is_in_the_sweep_and_passes():
    rows = committed_rows()
    missing = [(n, h) for n in models.names() for h in sweep.HEADS if (n, h) not in rows]
    assert not missing, f"not in {SWEEP}: {missing}; run python -m fexport.bench.sweep"
    failing = [key for key, row in rows.items() if not row["passed"]]
    assert not failing, f"failing in the committed sweep: {failing}"


def test_sweep_rows_record_what_the_readme_promises():
    for row in committed_rows().values():
        assert row["max_rel"] <= 1e-4 and row["min_cosine"] >= 0.9999
        assert row["feature_dim"] > 0 and row["onnx_mib"] > 0 and row["export_s"] > 0
    markdown = SWEEP.with_suffix(".md").read_text()
    assert "Machine:" in markdown and all(name in markdown for name in models.names())


def test_subset_names_are_registered():
    assert set(SUBSET) <= set(models.names())
