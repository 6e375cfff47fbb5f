"""The bench harness produces complete, well-formed results (no timed assertions)."""

import json

from conftest import run_cli

KEYS = {"batch", "iterations", "first_run_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms",
        "p99_ms", "images_per_s"}


def test_bench_reports_every_batch_size(resnet8_onnx, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "1,4", "--iters", "5", "--warmup",
                   "1", "--json", out)
    data = json.loads(out.read_text())
    assert [r["batch"] for r in data["results"]] == [1, 4]
    for row in data["results"]:
        assert set(row) == KEYS and row["iterations"] == 5
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["images_per_s"] > 0
    assert data["provider"] == "CPUExecutionProvider" and data["session_creation_s"] > 0
    assert data["machine"]["cores"] >= 1 and data["peak_rss_mib"] > 0
    assert "images/s" in proc.stdout


def test_bench_rejects_bad_batch_sizes(resnet8_onnx):
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "one", check=False)
    assert proc.returncode == 2 and "expected integers" in proc.stderr
