"""precision/quality.py: the measures a reduced-precision variant is judged by (row cosines,
nearest-neighbour agreement), on hand-made features."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fexport.precision import quality


def test_row_cosines_of_known_pairs():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [-2.0, -2.0], [0.0, 0.0], [1.0, 0.0], [6.0, 8.0]])
    np.testing.assert_allclose(quality.row_cosines(a, b), [0.0, -1.0, 1.0, 0.0, 1.0],
                               atol=1e-12)  # float64 arithmetic on exact inputs


@given(arrays(np.float32, (4, 6), elements=st.integers(-1000, 1000).map(float)),
       st.floats(1e-3, 1e3))
def test_cosines_ignore_scale_and_stay_in_range(features, scale):
    cosines = quality.row_cosines(features, features * np.float32(scale))
    nonzero = np.abs(features).sum(axis=1) > 0
    # float64 sums of float32 inputs scaled in float32: a few float32 ulps of error.
    np.testing.assert_allclose(cosines[nonzero], 1.0, atol=1e-5)
    assert ((-1 - 1e-12 <= cosines) & (cosines <= 1 + 1e-12)).all()


def test_nearest_neighbours_by_cosine():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    np.testing.assert_array_equal(quality.nearest(features, k=1)[:, 0], [1, 0, 3, 2, 2])
    assert quality.nearest(features, k=2).shape == (5, 2)


def test_neighbour_overlap_is_one_for_the_same_geometry_and_drops_when_it_changes():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 8))
    assert quality.neighbour_overlap(features, features * 3.0) == 1.0
    shuffled = features[rng.permutation(20)]
    assert quality.neighbour_overlap(features, shuffled) < 0.5
