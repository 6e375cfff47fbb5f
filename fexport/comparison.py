"""Comparing two sets of features, and every threshold that judges them, in one place.

Export against Keras (`verify`), reduced precision against float32 (`quantize`, `convert`,
`optimize`), fast decoding against exact (`verify-decode`) and the GPU suite all measure with
these functions and gate with these numbers. numpy only (scikit-learn for the linear probe).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fexport import reports
from fexport.extras import require

# --- export: the ONNX file against Keras on the same inputs -----------------------------------
# Scale-relative error: max|onnx - keras| / max|keras|. Measured on keras.applications with
# random weights, conversions land between 1e-7 and 2.4e-6 (float32 sums in a different order in
# MLAS than in oneDNN/Eigen); 1e-4 leaves 40x room for deeper nets and pretrained weights, while
# a real conversion defect (a wrong op, axis or constant) shows as 1e-2 or more.
EXPORT_MAX_REL = 1e-4
# Per-row cosine similarity: rounding noise of 1e-4 relative costs at most ~1e-8 of cosine, so
# 0.9999 never fails on noise and still catches a feature vector pointing the wrong way.
EXPORT_MIN_COSINE = 0.9999
# When a check misses the tolerance, Keras is run again on the same pixels times (1 + 1e-7
# noise), about one float32 ulp: how far Keras moves from itself is the model's own rounding
# sensitivity. ONNX Runtime sums in another order, so it differs by about as much (measured:
# 0.8x to 1.5x); a difference within SENSITIVITY_FACTOR of it is rounding amplified by the
# model, far beyond it a defect. Such a check still passes while that noise floor is below
# MAX_NOISE_FLOOR, where a defect (1e-2 or more) would stand out above it; above the ceiling
# (EfficientNetV2M with Keras's plain random init: 1.0) nothing can be verified and it fails.
INPUT_NOISE = 1e-7
SENSITIVITY_FACTOR = 4.0
MAX_NOISE_FLOOR = 1e-3

# --- reduced precision: a variant against float32, on images calibration never saw -----------
# Min per-image cosine to FP32. Measured on real photos (32 calibration images, 32 others):
# INT8 VGG16 and ResNet50 (random weights) 0.998, the pretrained mini-Xception 0.991 with
# percentile calibration (0.988 with minmax); FP16 1.00000. Above 0.99 the features kept 94% to
# 98% of each image's nearest neighbours; a broken quantization (a wrong scale, a saturated
# layer) falls to 0.9 or below.
VARIANT_MIN_COSINE = 0.99
NEIGHBOURS = 5
MIN_EVALUATION_IMAGES = NEIGHBOURS + 2  # nearest neighbours need more images than neighbours
PROBE_FOLDS = 3  # the linear probe's cross-validation: each class needs this many images

# --- fast decoding against exact (`fexport verify-decode`) ------------------------------------
# Fast decoding must move features less than Keras's own choice of resize filter does. On 16
# photos at 2560x1600, fast gave min cosine 0.960 (VWW MobileNet), 0.977 (ResNet-8) and 0.993
# (mini-Xception) to exact, while bilinear instead of nearest, both exact, gave 0.924, 0.755 and
# 0.938. On the same photos at about 500x400 fast gave 0.865, 0.840 and 0.962: small images gain
# little from fast, and lose more.
FAST_DECODE_MIN_COSINE = 0.95


def calibration_target(min_cosine) -> float:
    """What a search that measures on the calibration images aims at: half the gate's
    distance from 1.0 (0.995 for 0.99), so that images it never saw keep some margin."""
    return 1.0 - (1.0 - min_cosine) / 2


def row_cosines(a, b) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`; two zero rows agree."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    both_zero = (norms == 0) & (np.abs(a).sum(1) == np.abs(b).sum(1))
    return np.where(both_zero, 1.0, dots / np.where(norms == 0, 1.0, norms))


def max_abs(expected, actual) -> float:
    """max |actual - expected|, in float64; 0 for empty features."""
    if not np.size(expected):
        return 0.0
    return float(np.abs(expected.astype(np.float64) - actual).max())


def max_rel(expected, actual, absolute=None) -> float:
    """max |actual - expected| / max |expected|: the error against the largest feature.
    `absolute`: max_abs of the same pair, when the caller has it already."""
    if not np.size(expected):
        return 0.0
    absolute = max_abs(expected, actual) if absolute is None else absolute
    return absolute / max(float(np.abs(expected).max()), 1e-30)


def nearest(features, k=NEIGHBOURS) -> np.ndarray:
    """Indices of each row's k nearest other rows by cosine similarity."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-30)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def neighbour_overlap(expected, actual, k=NEIGHBOURS) -> float:
    """Mean share of each image's k nearest neighbours that both feature sets agree on."""
    a, b = nearest(expected, k), nearest(actual, k)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def probe_accuracy(features, labels, folds=PROBE_FOLDS) -> float:
    """Cross-validated accuracy of a logistic regression on standardized features."""
    purpose = "the linear-probe accuracy (evaluation images in class folders)"
    linear_model = require("sklearn.linear_model", purpose)
    model_selection = require("sklearn.model_selection", purpose)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=2000))
    splits = model_selection.StratifiedKFold(folds, shuffle=True, random_state=0)
    return float(model_selection.cross_val_score(probe, features, labels, cv=splits).mean())


def check(label, expected, actual, max_rel_allowed, min_cosine) -> reports.CheckResult:
    """One export check, `expected` (Keras) against `actual` (ONNX): OK within both
    tolerances, else DEFECT until `judge_by_noise_floor` looks closer."""
    if expected.shape != actual.shape:
        return reports.CheckResult(label, expected.shape, actual.shape, np.inf, np.inf, -1.0,
                                   reports.SHAPE_MISMATCH)
    absolute = max_abs(expected, actual)
    rel = max_rel(expected, actual, absolute)
    cosine = float(row_cosines(expected, actual).min()) if expected.size else 1.0
    within = rel <= max_rel_allowed and cosine >= min_cosine
    return reports.CheckResult(label, expected.shape, actual.shape, absolute, rel, cosine,
                               reports.OK if within else reports.DEFECT)


def judge_by_noise_floor(result: reports.CheckResult,
                         floor: reports.NoiseFloor) -> reports.CheckResult:
    """A check beyond the tolerances, judged against how far Keras moves from itself."""
    if result.max_rel > SENSITIVITY_FACTOR * floor.max_rel:
        outcome = reports.DEFECT
    elif floor.max_rel <= MAX_NOISE_FLOOR:
        outcome = reports.ROUNDING
    else:
        outcome = reports.UNRESOLVABLE
    return dataclasses.replace(result, outcome=outcome, noise_floor=floor)
