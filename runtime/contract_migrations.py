"""Older contracts, upgraded on open to the current format, so every file fexport ever wrote
still runs (and `fexport info` still shows what it measured).

Format 1 (until 2026-11-27) kept a summary of verification (`checks` was a count, the limits
`rtol` and `min_cosine_threshold`) and the quality report under the names of that time. Format
2 keeps every check and names limits `*_allowed` / `*_required` (fexport/reports.py). Format 3
only added fields, whose defaults are what a format-2 file did.
"""

from __future__ import annotations

from fexport import reports


def upgrade(data: dict) -> dict:
    """A contract's JSON dict in the current format's shape (the version is updated too)."""
    if data.get("format_version") == 1:
        data = _from_format_1(data)
    return data


def _from_format_1(data: dict) -> dict:
    data = dict(data, format_version=2)
    if data.get("verification") is not None:
        data["verification"] = _verification_from_summary(data["verification"])
    if data.get("quantization") is not None:
        data["quantization"] = _quality_from_format_1(data["quantization"])
    return data


def _verification_from_summary(summary: dict) -> dict:
    """The one check format 1 kept: the worst values over all of its checks."""
    check = {"label": f"{summary['checks']} checks (a format-1 contract kept their summary)",
             "keras_shape": [], "onnx_shape": [], "max_abs": summary.get("max_abs", 0.0),
             "max_rel": summary["max_rel"], "min_cosine": summary["min_cosine"],
             "outcome": reports.OK if summary["passed"] else reports.DEFECT}
    return {"checks": [check], "max_rel_allowed": summary["rtol"],
            "min_cosine_required": summary["min_cosine_threshold"]}


def _quality_from_format_1(old: dict) -> dict:
    overlap = next((k for k in old if k.startswith("neighbour_overlap_at_")), None)
    probes = old.get("linear_probe_accuracy") or {}
    renamed = {"min_cosine_required": old["min_cosine_threshold"],
               "probe_accuracy_float32": probes.get("float32"),
               "probe_accuracy_candidate": probes.get("candidate")}
    if overlap:
        renamed.update(neighbour_overlap=old[overlap],
                       neighbours=int(overlap.rsplit("_", 1)[1]))
    dropped = {"min_cosine_threshold", "linear_probe_accuracy", "passed", overlap}
    return {**{k: v for k, v in old.items() if k not in dropped}, **renamed}
