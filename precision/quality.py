"""What reduced precision costs in feature quality, measured against the float32 model.

On evaluation images the calibration never saw: per-image cosine similarity (min, mean),
scale-relative error, agreement of each image's nearest neighbours, and, with folder-per-class
labels, the accuracy of a logistic regression trained on each set of features. Feature quality
is judged by what users do with features (retrieval, linear classifiers), not by raw error alone.
"""

from __future__ import annotations

from fexport.comparison import (
    NEIGHBOURS,
    VARIANT_MIN_COSINE,
    max_rel,
    neighbour_overlap,
    probe_accuracy,
    row_cosines,
)
from fexport.reports import QualityReport


def evaluate(reference, candidate, paths, labels=None,
             min_cosine=VARIANT_MIN_COSINE) -> QualityReport:
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


def failure_message(report: QualityReport, output) -> str:
    return (f"{report.precision} features fall to cosine {report.min_cosine:.4f} of "
            f"float32 on at least one image (threshold {report.min_cosine_required:g}). "
            f"{output} was written for inspection. Try another --method (percentile, minmax, "
            "entropy, nncf, nncf-accuracy), more calibration images (--samples), or keep "
            "float32.")
