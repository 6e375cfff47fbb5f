"""How calibration and evaluation images are chosen, and the message for any folder size: the
counts found, what is needed, and the ways out."""

import re
import shutil

import pytest

from conftest import error_line, run_cli
from fexport.errors import UsageError
from fexport.precision import imagesets


def _folder(tmp_path, photo_paths, count, name="images"):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(count):
        shutil.copy(photo_paths[i % len(photo_paths)], folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("found, calibrate, judge", [
    (8, 1, 7), (9, 2, 7), (24, 16, 8), (30, 20, 10), (200, 64, 136)])
def test_one_folder_keeps_a_third_and_at_least_seven_to_judge(found, calibrate, judge):
    calibration, evaluation = imagesets.split([f"{i}.jpg" for i in range(found)], 64)
    assert (len(calibration), len(evaluation)) == (calibrate, judge)
    assert not set(calibration) & set(evaluation)


def test_the_split_is_fixed_and_shuffled():
    paths = [f"{i:03d}.jpg" for i in range(30)]
    assert imagesets.split(paths, 64) == imagesets.split(list(reversed(paths)), 64)
    assert imagesets.split(paths, 64)[0] != paths[:20]


def test_smallest_folder_follows_the_rule():
    assert imagesets.smallest_folder(64, "int8") == 8
    assert imagesets.smallest_folder(64, "fp16") == 7


@pytest.mark.parametrize("count", [0, 3, 7])
def test_too_small_a_folder_gives_the_counts_and_two_ways_out(tmp_path, photo_paths, count):
    folder = _folder(tmp_path, photo_paths, count)
    with pytest.raises(UsageError) as caught:
        imagesets.from_folders(folder, None, 64, "int8")
    message = str(caught.value)
    assert f"found {count} images in {folder}: 0 calibrate, {count} judge" in message
    assert "at least 8 images in one folder" in message and "--eval-images DIR" in message


def test_separate_folders_count_each(tmp_path, photo_paths):
    calibration = _folder(tmp_path, photo_paths, 3, "calibration")
    evaluation = _folder(tmp_path, photo_paths, 5, "evaluation")
    with pytest.raises(UsageError, match="and 5 evaluation images in .*: 3 calibrate, 5 judge; "
                                         "INT8 needs at least 1 to calibrate and 7 others"):
        imagesets.from_folders(calibration, evaluation, 64, "int8")
    with pytest.raises(UsageError, match=r"found 5 images in .*evaluation: 5 judge; FP16 is "
                                         "judged on at least 7 images"):
        imagesets.from_folders(None, evaluation, 0, "fp16")
    enough = _folder(tmp_path, photo_paths, 7, "enough")
    sets = imagesets.from_folders(calibration, enough, 2, "int8")
    assert (len(sets.calibration), len(sets.evaluation)) == (2, 7)


def test_quantize_cli_with_seven_images(resnet8_onnx, tmp_path, photo_paths):
    folder = _folder(tmp_path, photo_paths, 7)
    proc = run_cli("quantize", resnet8_onnx, "--calibration-images", folder, "-o",
                   tmp_path / "q.onnx", check=False)
    assert proc.returncode == 2
    line = error_line(proc)
    assert "found 7 images" in line and "0 calibrate, 7 judge" in line
    assert "at least 8 images" in line and "--eval-images" in line
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_cli_states_the_split_it_used(resnet8_onnx, tmp_path, photo_paths):
    folder = _folder(tmp_path, photo_paths, 9)
    proc = run_cli("quantize", resnet8_onnx, "--calibration-images", folder, "-o",
                   tmp_path / "q.onnx", "--min-cosine", "0")
    assert f"found 9 images in {folder}: 2 calibrate, 7 judge" in proc.stdout
    help_text = run_cli("quantize", "--help").stdout
    assert "shuffled with a fixed seed" in re.sub(r"[\s│]+", " ", help_text)  # rich's boxes
