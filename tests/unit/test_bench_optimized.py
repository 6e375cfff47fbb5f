"""The optimize suite's report: each run against issue #25's goal, the table with what kept
nodes in float gained."""

from __future__ import annotations

from fexport.bench import optimized


def _row(candidate, precision, backend, speedup, min_cosine, kept=(), gain=None):
    return {"candidate": candidate, "backend": backend, "precision": precision,
            "images_per_s": 1000 * speedup, "speedup": speedup, "min_cosine": min_cosine,
            "mean_cosine": min_cosine, "nearest_5": 0.9, "method": "m", "kept_float": list(kept),
            "verdict": "pass" if min_cosine >= 0.99 else f"min cosine {min_cosine} < 0.99",
            "gain": gain}


def _result(chosen_index):
    rows = [_row("fp32", "fp32", "onnxruntime", 1.0, 1.0),
            _row("int8 nncf", "int8", "openvino", 1.25, 0.985),
            _row("int8 nncf-accuracy", "int8", "openvino", 1.1, 0.991, ["conv_1"], 0.006)]
    chosen = rows[chosen_index] if chosen_index is not None else None
    return {"rows": rows, "chosen": chosen, "notes": ["INT8 calibrated on 32 images"]}


def test_a_run_meets_its_goal_only_with_a_fast_enough_passing_int8_choice():
    slow = optimized.goal("VWW-MobileNet", _result(2))
    assert not slow["met"] and slow["best_int8"]["candidate"] == "int8 nncf-accuracy"
    fast = _result(2)
    fast["rows"][2]["speedup"] = fast["chosen"]["speedup"] = 1.3
    assert optimized.goal("VWW-MobileNet", fast)["met"]
    assert not optimized.goal("VGG16", fast)["met"]  # VGG16's goal is 3.5x
    assert not optimized.goal("VWW-MobileNet", _result(None))["met"]


def test_the_report_names_the_goal_the_kept_nodes_and_their_gain():
    result = _result(2)
    data = {"machine": {"cpu": "AMD EPYC", "cpu_flags": ["avx2"], "cores": 2},
            "load_before": 0.1, "load_after": 1.2,
            "runs": [{"model": "VWW-MobileNet", "batch": 32, **result,
                      "goal": optimized.goal("VWW-MobileNet", result)}]}
    text = optimized.markdown(data)
    assert ("| VWW-MobileNet | 32 | int8 nncf-accuracy on openvino | 1.10x | 0.9910 | INT8 >= "
            "1.2x: not met (fastest passing INT8: int8 nncf-accuracy on openvino, 1.10x) |"
            ) in text
    assert "| int8 nncf-accuracy | openvino | 1100.0 | 1.10x | 0.9910 | +0.0060 |" in text
    assert "- INT8 calibrated on 32 images" in text
