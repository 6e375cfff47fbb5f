"""bench/pipeline_report.py: the end-to-end report's ratios, its table per decoder, and its
goals, from results written now and before the decoders were compared."""

from __future__ import annotations

import pytest

from fexport.bench import pipeline_report


def _row(images, quality, decode, pipeline, decoder="threads"):
    return {"images": images, "decode_quality": quality, "decoder": decoder, "count": 24,
            "workers": 4, "decode_images_per_s": decode, "engine_images_per_s": 400.0,
            "pipeline_images_per_s": pipeline}


DATA = {"machine": {"cpu": "Some CPU", "cores": 2, "cpu_flags": ["avx2"],
                    "onnxruntime": "1.0", "pillow": "1.0"},
        "load_before": 0.1, "load_after": 0.5, "quiet": True, "passes": 3, "batch_size": 32,
        "image_sets": {"large": {"images": 24, "mean_kib": 400.0}},
        "models": [{"model": "ResNet-8", "rows": [
            _row("large", "exact", 100.0, 60.0), _row("large", "fast", 200.0, 120.0),
            _row("large", "exact", 100.0, 50.0, "processes"),
            _row("large", "fast", 200.0, 90.0, "processes")]}]}


def test_ratios_against_serial_decoding_alone_and_taking_turns():
    vs_serial, vs_decode, turns = pipeline_report.ratios(_row("large", "exact", 100.0, 60.0))
    assert turns == pytest.approx(0.8)  # 1 / (1/100 + 1/400) = 80 images/s, over 100
    assert vs_serial == pytest.approx(60 / 80) and vs_decode == pytest.approx(0.6)


def test_the_report_has_a_row_and_a_gain_per_decoder():
    text = pipeline_report.markdown(DATA)
    assert "| large | fast | processes | 200.0 | 400.0 | 90.0 | 0.67x | 0.45x | 0.67x |" in text
    assert "ResNet-8, large, threads: fast 2.00x exact end to end (goal 1.5x)" in text
    assert "ResNet-8, large, processes: fast 1.80x exact end to end (goal 1.5x)" in text


def test_results_from_before_the_decoders_read_as_threads():
    rows = [{k: v for k, v in row.items() if k != "decoder"}
            for row in DATA["models"][0]["rows"][:2]]
    old = {**DATA, "models": [{"model": "ResNet-8", "rows": rows}]}
    assert "ResNet-8, large, threads: fast 2.00x" in "\n".join(pipeline_report.goals(old))
