"""The engines suite's report: the fastest verified runtime, and what was refused and why."""

from __future__ import annotations

from fexport.bench import engines


def _row(runtime, rate):
    return {"runtime": runtime, "batch": engines.BATCH, "images_per_s": rate}


def _data():
    quality = {"int8": {"passed": True, "min_cosine": 0.9987},
               "int8-bf16": {"refused": "fexport quantize M --bf16 failed: fexport: error: "
                                        "OpenVINO left nothing of this INT8 file in float"},
               "bf16": {"passed": False, "min_cosine": 0.97}}
    results = [_row("fexport openvino cpu int8", 222.4), _row("bare openvino cpu int8", 224.0),
               _row("fexport openvino cpu bf16", 300.0), _row("keras.predict", 36.9)]
    return {"machine": {"cpu": "AMD EPYC", "cpu_flags": ["avx512_vnni"], "cores": 2,
                        "onnxruntime": "1.32.0"},
            "load_before": 0.16, "load_after": 1.7, "quiet": True,
            "models": [{"model": "ResNet50", "quality": quality,
                        "run": {"results": results, "skipped": []}}]}


def test_the_fastest_verified_runtime_skips_failed_and_refused_variants():
    text = engines.markdown(_data())
    # bf16 is faster but failed its gate: the INT8 row is the answer, against Keras predict.
    assert "Fastest verified: **openvino cpu int8**, 222.4 images/s, 6.03x Keras predict." in text
    assert "| fexport openvino cpu int8 | 222.4 | 6.03x | 0.99x | 0.9987 |" in text


def test_a_refused_variant_is_named_with_fexports_own_reason():
    text = engines.markdown(_data())
    assert "Refused, not timed: int8-bf16: OpenVINO left nothing of this INT8 file in float" \
        in text
