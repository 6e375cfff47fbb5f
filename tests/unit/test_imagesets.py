"""precision/imagesets.py: which images calibrate and which judge, by the rule `--help`
states: a fixed shuffle, a third (at least 7) kept to judge, up to `samples` calibrate."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fexport.comparison import MIN_EVALUATION_IMAGES
from fexport.errors import UsageError
from fexport.precision import imagesets


def _folder(path, count):
    path.mkdir()
    for i in range(count):
        (path / f"class{i % 2}_{i:03d}.png").write_bytes(b"")  # listed by name, never opened
    return path


@given(st.integers(0, 200), st.integers(0, 100))
def test_split_keeps_a_third_to_judge_and_calibrates_at_most_samples(count, samples):
    paths = [f"img{i:03d}.png" for i in range(count)]
    calibrate, judge = imagesets.split(paths, samples)
    assert sorted(calibrate + judge) == paths and not set(calibrate) & set(judge)
    assert len(calibrate) <= samples
    assert len(judge) >= min(count, max(MIN_EVALUATION_IMAGES, math.ceil(count / 3)))
    if count - max(MIN_EVALUATION_IMAGES, math.ceil(count / 3)) >= samples:
        assert len(calibrate) == samples  # as many as asked when there are enough


def test_the_shuffle_is_fixed_and_mixes_a_sorted_folder():
    paths = [f"a{i:02d}" for i in range(20)] + [f"b{i:02d}" for i in range(20)]
    first = imagesets.split(paths, 16)
    assert imagesets.split(list(reversed(paths)), 16) == first  # order in does not matter
    assert {p[0] for p in first[0]} == {"a", "b"}  # both classes calibrate


def test_smallest_folder_is_the_fewest_images_the_rule_can_split():
    assert imagesets.smallest_folder(64, "int8") == MIN_EVALUATION_IMAGES + 1
    assert imagesets.smallest_folder(64, "fp16") == MIN_EVALUATION_IMAGES
    with pytest.raises(UsageError, match="--samples 0: INT8 calibrates on at least 1"):
        imagesets.smallest_folder(0, "int8")


def test_one_folder_is_split(tmp_path):
    folder = _folder(tmp_path / "imgs", 30)
    sets = imagesets.from_folders(folder, None, 8, "int8")
    assert (len(sets.calibration), len(sets.evaluation)) == (8, 22)
    assert sets.summary() == f"found 30 images in {folder}: 8 calibrate, 22 judge"
    fp16 = imagesets.from_folders(folder, None, 8, "fp16")
    assert (fp16.calibration, len(fp16.evaluation), fp16.calibrates) == ([], 30, False)
    assert fp16.summary() == f"found 30 images in {folder}: 30 judge"


def test_a_folder_too_small_is_refused_with_the_counts(tmp_path):
    folder = _folder(tmp_path / "few", 7)
    with pytest.raises(UsageError, match=f"found 7 images in {folder}: 0 calibrate, 7 judge; "
                                         "INT8 needs at least 1 to calibrate and 7 others"):
        imagesets.from_folders(folder, None, 64, "int8")


def test_a_separate_evaluation_folder_judges_all_of_its_images(tmp_path):
    calibration = _folder(tmp_path / "cal", 10)
    evaluation = _folder(tmp_path / "eval", 7)
    sets = imagesets.from_folders(calibration, evaluation, 4, "int8-bf16")
    assert len(sets.calibration) == 4 and len(sets.evaluation) == 7
    assert all(p.startswith(str(calibration)) for p in sets.calibration)
    with pytest.raises(UsageError, match="FP16 is judged on at least 7 images"):
        imagesets.from_folders(None, _folder(tmp_path / "six", 6), 4, "fp16")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        imagesets.from_folders(tmp_path / "nowhere", None, 8, "int8")
