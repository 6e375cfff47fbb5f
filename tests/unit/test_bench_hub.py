"""The KerasHub suite's report: issue #26's goals from one bench run and the verification."""

from __future__ import annotations

from fexport.bench import hub


def _data(variant_speed, cosine=0.9999998):
    results = [{"runtime": "keras.predict", "images_per_s": 10.0},
               {"runtime": "keras.__call__", "images_per_s": 12.0},
               {"runtime": "onnxruntime", "images_per_s": 21.0},
               {"runtime": "openvino int8", "images_per_s": variant_speed},
               {"runtime": "decode+resize", "images_per_s": 100.0},  # the loader, not an engine
               {"runtime": "end-to-end", "images_per_s": 9.0}]
    return {"machine": {"cpu": "AMD EPYC", "cpu_flags": ["avx2"], "cores": 2},
            "load_before": 0.1, "load_after": 1.5, "verification": {"min_cosine": cosine},
            "bench": {"results": results},
            "optimize": {"rows": [], "notes": ["INT8 calibrated on 32 images"]}}


def test_the_goal_is_the_fastest_fexport_runtime_against_keras_predict():
    slow, fast = _data(25.0), _data(31.0)
    assert hub.goals(slow)["fastest"] == "openvino int8"
    assert not hub.goals(slow)["speedup_met"] and hub.goals(fast)["speedup_met"]
    assert abs(hub.goals(fast)["speedup_vs_keras"] - 3.1) < 1e-9  # keras.__call__ not counted
    assert not hub.goals(_data(31.0, cosine=0.9998))["cosine_met"]


def test_the_report_names_the_machine_the_goals_and_every_runtime():
    data = _data(31.0)
    data["goals"] = hub.goals(data)
    text = hub.markdown(data)
    assert "AMD EPYC (avx2), 2 cores" in text and "Load average 0.10 before" in text
    assert "openvino int8, 3.10x Keras predict; goal >= 3.0x: met" in text
    assert "| onnxruntime | 21.0 | 2.10x |" in text and "INT8 calibrated on 32" in text
