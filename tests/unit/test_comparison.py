"""fexport/comparison.py: the measures exports and variants are judged by (row cosines,
relative error, nearest-neighbour agreement, the noise floor), on hand-made features, and the
rule that every threshold is defined there."""

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fexport import comparison, reports


def test_row_cosines_of_known_pairs():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [-2.0, -2.0], [0.0, 0.0], [1.0, 0.0], [6.0, 8.0]])
    np.testing.assert_allclose(comparison.row_cosines(a, b), [0.0, -1.0, 1.0, 0.0, 1.0],
                               atol=1e-12)  # float64 arithmetic on exact inputs


@given(arrays(np.float32, (4, 6), elements=st.integers(-1000, 1000).map(float)),
       st.floats(1e-3, 1e3))
def test_cosines_ignore_scale_and_stay_in_range(features, scale):
    cosines = comparison.row_cosines(features, features * np.float32(scale))
    nonzero = np.abs(features).sum(axis=1) > 0
    # float64 sums of float32 inputs scaled in float32: a few float32 ulps of error.
    np.testing.assert_allclose(cosines[nonzero], 1.0, atol=1e-5)
    assert ((-1 - 1e-12 <= cosines) & (cosines <= 1 + 1e-12)).all()


def test_nearest_neighbours_by_cosine():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    np.testing.assert_array_equal(comparison.nearest(features, k=1)[:, 0], [1, 0, 3, 2, 2])
    assert comparison.nearest(features, k=2).shape == (5, 2)


def test_neighbour_overlap_is_one_for_the_same_geometry_and_drops_when_it_changes():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 8))
    assert comparison.neighbour_overlap(features, features * 3.0) == 1.0
    shuffled = features[rng.permutation(20)]
    assert comparison.neighbour_overlap(features, shuffled) < 0.5


def test_a_check_within_both_tolerances_is_ok_and_beyond_them_a_defect():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    ok = comparison.check("same", expected, expected * (1 + 1e-6), 1e-4, 0.9999)
    assert ok.outcome == reports.OK and ok.max_rel == pytest.approx(1e-6, rel=1e-6)
    off = comparison.check("off", expected, expected + [[0.0, 0.1], [0.0, 0.0]], 1e-4, 0.9999)
    assert off.outcome == reports.DEFECT and off.max_rel == pytest.approx(0.1 / 4, rel=1e-5)
    wrong = comparison.check("shape", expected, expected[:1], 1e-4, 0.9999)
    assert wrong.outcome == reports.SHAPE_MISMATCH and not wrong.passed


@pytest.mark.parametrize("floor_rel,outcome", [(1e-4, reports.ROUNDING),
                                               (1e-6, reports.DEFECT),
                                               (0.5, reports.UNRESOLVABLE)])
def test_a_check_beyond_the_tolerance_is_judged_by_kerass_own_noise(floor_rel, outcome):
    beyond = comparison.check("x", np.ones((1, 4)), np.ones((1, 4)) * (1 + 2e-4), 1e-4, 0.9999)
    floor = reports.NoiseFloor(comparison.INPUT_NOISE, floor_rel, 1.0)
    assert comparison.judge_by_noise_floor(beyond, floor).outcome == outcome


def test_every_threshold_is_defined_in_the_comparison_module_only():
    """A cosine or relative-error gate named anywhere else would be a second definition."""
    root = Path(__file__).resolve().parents[2]
    gate = re.compile(r"^[A-Z_]*(MIN_COSINE|MAX_REL|RTOL)[A-Z_]* = [\d.e-]+$", re.M)
    found = [f"{path.relative_to(root)}: {m.group(0)}"
             for folder in ("fexport", "exporter", "runtime", "precision", "serve", "models")
             for path in (root / folder).rglob("*.py") if path.name != "comparison.py"
             for m in gate.finditer(path.read_text())]
    assert found == []
