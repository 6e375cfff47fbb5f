"""Which images calibrate a reduced-precision variant and which judge it.

The rule, as `--help` states it: from one folder, the images are shuffled with a fixed seed (a
folder sorted by class must not calibrate on one class and judge on another); a third of them,
and at least MIN_EVALUATION_IMAGES, are kept to judge; of the rest, up to `samples` calibrate
and any left over judge too. With a separate evaluation folder, all of its images judge and up
to `samples` of the calibration folder's calibrate.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

from fexport.comparison import MIN_EVALUATION_IMAGES
from fexport.errors import UsageError
from fexport.runtime.files.images import list_images

# ONNX Runtime's calibrator needs one image to set each activation's range; whether a few were
# enough is for the quality report to say, on the images kept apart, not for this count.
MIN_CALIBRATION_IMAGES = 1
# Below this many calibration images a variant is warned about, though still judged: on the
# VWW MobileNet (32 held-out photos, a 2-core AMD EPYC) NNCF INT8 had max rel error 0.34 from
# 8 images, 0.13 from 16 and 0.11 from 32, and mean cosine 0.9959, 0.9979 and 0.9982.
ENOUGH_CALIBRATION_IMAGES = 32


@dataclass(frozen=True)
class ImageSets:
    calibration: list[str]
    evaluation: list[str]
    found: str  # where they came from, in words, for the summary line
    calibrates: bool = True  # False for FP16, which is judged only

    def summary(self) -> str:
        calibrating = f"{len(self.calibration)} calibrate, " if self.calibrates else ""
        return f"{self.found}: {calibrating}{len(self.evaluation)} judge"

    def warning(self) -> str | None:
        """Why the calibration may be too small to trust, or None."""
        count = len(self.calibration)
        if not self.calibrates or count >= ENOUGH_CALIBRATION_IMAGES:
            return None
        return (f"only {count} calibration images: with fewer than "
                f"{ENOUGH_CALIBRATION_IMAGES}, INT8 ranges miss activations that other images "
                "reach; add images like the ones you will extract (--samples caps them)")


def from_folders(calibration_dir, evaluation_dir, samples, precision) -> ImageSets:
    """The two sets, from the calibration folder and, optionally, a separate evaluation
    folder (either may be None for FP16); UsageError with the counts when one is too small."""
    calibration_images = _images_in(calibration_dir)
    if evaluation_dir is not None:
        return _two_folders((calibration_dir, calibration_images),
                            (evaluation_dir, _images_in(evaluation_dir)), samples, precision)
    calibrate, judge = split(calibration_images, samples if _calibrates(precision) else 0)
    sets = ImageSets(calibrate, judge,
                     f"found {len(calibration_images)} images in {calibration_dir}",
                     _calibrates(precision))
    needed = smallest_folder(samples, precision)
    if len(calibration_images) < needed:
        raise UsageError(f"{sets.summary()}; {_needs(precision)}, so at least {needed} images "
                         f"in one folder. Add images, or pass --eval-images DIR with at least "
                         f"{MIN_EVALUATION_IMAGES} other images to judge on"
                         + (" so that all of these calibrate" if _calibrates(precision) else ""))
    return sets


def _images_in(folder) -> list[str]:
    if folder is None:
        return []
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such folder; expected a folder of images")
    return sorted(list_images(folder))


def _two_folders(calibration, evaluation, samples, precision) -> ImageSets:
    (calibration_dir, calibration_images), (evaluation_dir, evaluation_images) = \
        calibration, evaluation
    calibrate = _shuffled(calibration_images)[:samples] if _calibrates(precision) else []
    found = f"found {len(evaluation_images)} images in {evaluation_dir}"
    if _calibrates(precision):
        found = (f"found {len(calibration_images)} calibration images in {calibration_dir} "
                 f"and {len(evaluation_images)} evaluation images in {evaluation_dir}")
    sets = ImageSets(calibrate, evaluation_images, found, _calibrates(precision))
    check_counts(len(sets.calibration), len(sets.evaluation), precision, sets.summary())
    return sets


def check_counts(calibrating, judging, precision, found) -> None:
    """UsageError unless there are enough images to calibrate and to judge `precision`."""
    if calibrating < _min_calibration(precision) or judging < MIN_EVALUATION_IMAGES:
        raise UsageError(f"{found}; {_needs(precision)}. Add images to the folder that has "
                         "too few")


def _shuffled(paths) -> list[str]:
    """A fixed shuffle: a folder sorted by class must not calibrate on its first classes."""
    paths = sorted(map(str, paths))
    random.Random(0).shuffle(paths)
    return paths


def split(paths, samples) -> tuple[list[str], list[str]]:
    """Calibration and evaluation images from one folder, by the rule in this module's doc."""
    paths = _shuffled(paths)
    kept = max(MIN_EVALUATION_IMAGES, math.ceil(len(paths) / 3))
    calibrating = max(0, min(samples, len(paths) - kept))
    return paths[:calibrating], paths[calibrating:]


def smallest_folder(samples, precision) -> int:
    """The fewest images one folder may hold for `precision` under the split rule."""
    if samples < _min_calibration(precision):
        raise UsageError(f"--samples {samples}: INT8 calibrates on at least "
                         f"{MIN_CALIBRATION_IMAGES} image")
    size = MIN_EVALUATION_IMAGES
    while len(split(range(size), samples)[0]) < _min_calibration(precision):
        size += 1
    return size


def _calibrates(precision) -> bool:
    return precision.startswith("int8")


def _min_calibration(precision) -> int:
    return MIN_CALIBRATION_IMAGES if _calibrates(precision) else 0


def _needs(precision) -> str:
    if _calibrates(precision):
        return (f"INT8 needs at least {MIN_CALIBRATION_IMAGES} to calibrate and "
                f"{MIN_EVALUATION_IMAGES} others to judge")
    return f"{precision.upper()} is judged on at least {MIN_EVALUATION_IMAGES} images"
