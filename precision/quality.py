"""What reduced precision costs in feature quality, measured against the float32 model.

On evaluation images the calibration never saw: per-image cosine similarity (min, mean),
scale-relative error, agreement of each image's nearest neighbours, and, with folder-per-class
labels, the accuracy of a logistic regression trained on each set of features. Feature quality
is judged by what users do with features (retrieval, linear classifiers), not by raw error alone.
"""

from __future__ import annotations

import numpy as np

from fexport.extras import require
from fexport.reports import QualityReport

# Min per-image cosine to FP32. Measured on real photos (32 calibration images, 32 others):
# INT8 VGG16 and ResNet50 (random weights) 0.998, the pretrained mini-Xception 0.991 with
# percentile calibration (0.988 with minmax); FP16 1.00000. Above 0.99 the features kept 94% to
# 98% of each image's nearest neighbours; a broken quantization (a wrong scale, a saturated
# layer) falls to 0.9 or below.
DEFAULT_MIN_COSINE = 0.99
NEIGHBOURS = 5
MIN_EVALUATION_IMAGES = NEIGHBOURS + 2
PROBE_FOLDS = 3  # the linear probe's cross-validation: each class needs this many images


def calibration_target(min_cosine) -> float:
    """What a search that measures on the calibration images aims at: half the gate's
    distance from 1.0 (0.995 for 0.99), so that images it never saw keep some margin."""
    return 1.0 - (1.0 - min_cosine) / 2


def evaluate(reference, candidate, paths, labels=None,
             min_cosine=DEFAULT_MIN_COSINE) -> QualityReport:
    """Compare two FeatureExtractors on `paths`: the measurements, gated at `min_cosine`
    (quantize.judge adds what the candidate is and what ran it)."""
    expected, actual = reference.extract(paths), candidate.extract(paths)
    cosines = row_cosines(expected, actual)
    probes = (probe_accuracy(expected, labels), probe_accuracy(actual, labels)) \
        if labels is not None else (None, None)
    return QualityReport(
        images=len(paths), min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()),
        max_rel=max_rel(expected, actual), neighbour_overlap=neighbour_overlap(expected, actual),
        neighbours=NEIGHBOURS, min_cosine_required=min_cosine,
        probe_accuracy_float32=probes[0], probe_accuracy_candidate=probes[1])


def row_cosines(a, b) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`; two zero rows agree."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    both_zero = (norms == 0) & (np.abs(a).sum(1) == np.abs(b).sum(1))
    return np.where(both_zero, 1.0, dots / np.where(norms == 0, 1.0, norms))


def max_rel(expected, actual) -> float:
    """max |actual - expected| / max |expected|: the error against the largest feature."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    return float(np.abs(expected.astype(np.float64) - actual).max() / scale)


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


def failure_message(report: QualityReport, output) -> str:
    return (f"{report.precision} features fall to cosine {report.min_cosine:.4f} of "
            f"float32 on at least one image (threshold {report.min_cosine_required:g}). "
            f"{output} was written for inspection. Try another --method (percentile, minmax, "
            "entropy, nncf, nncf-accuracy), more calibration images (--samples), or keep "
            "float32.")
