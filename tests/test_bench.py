"""The bench harness and suite produce complete, well-formed results (no timed assertions)."""

import json
import math
from pathlib import Path

from PIL import Image

from conftest import run_cli
from fexport.bench import flops, matmul, report, suite
from fexport.runtime.timing import machine

KEYS = {"runtime", "batch", "iterations", "calls_per_round", "first_run_ms", "mean_ms",
        "p50_ms", "p90_ms", "p95_ms", "p99_ms", "images_per_s"}
RUNTIMES = ["onnxruntime", "keras.predict", "keras.__call__"]


def check_rows(rows, iterations):
    for row in rows:
        assert set(row) == KEYS and row["iterations"] == iterations
        assert row["calls_per_round"] >= 1
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["images_per_s"] > 0 and row["first_run_ms"] > 0


def test_bench_reports_every_batch_size(resnet8_onnx):
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "1,4", "--iters", "5", "--warmup",
                   "1", "--json")
    data = json.loads(proc.stdout)  # --json: stdout is the result alone, the table on stderr
    assert [(r["runtime"], r["batch"]) for r in data["results"]] == [
        ("onnxruntime", 1), ("onnxruntime", 4)]
    check_rows(data["results"], 5)
    assert data["provider"] == "CPUExecutionProvider" and data["session_creation_s"] > 0
    assert data["machine"]["cores"] >= 1 and data["peak_rss_mib"] > 0
    assert {"onnxruntime", "numpy", "cpu"} <= set(data["machine"])
    assert "images/s" in proc.stderr


def test_bench_without_json_prints_the_table(resnet8_onnx):
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "1", "--iters", "2")
    assert "images/s" in proc.stdout and "images/s" not in proc.stderr


def test_bench_compares_keras_and_times_images(resnet8_onnx, photos):
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "2", "--iters", "3", "--warmup",
                   "1", "--compare-keras", "--images", photos, "--json")
    data = json.loads(proc.stdout)
    rows = data["results"]
    assert [r["runtime"] for r in rows] == RUNTIMES + ["decode+resize", "end-to-end"]
    check_rows(rows, 3)
    assert "onnxruntime" in proc.stderr and "x faster" in proc.stderr
    assert "of inference alone" in proc.stderr
    # Where the time went: the folder once, every image, each stage's seconds within the run.
    profile = data["profile"]
    assert profile["images"] == len(list(Path(photos).iterdir()))
    assert 0 < profile["engine"] + profile["decode_wait"] <= profile["total"]
    assert profile["decoders"]["decode"] > 0
    assert "waiting for decoding" in proc.stderr and "decoders, summed" in proc.stderr


def test_bench_rejects_bad_batch_sizes(resnet8_onnx):
    proc = run_cli("bench", resnet8_onnx, "--batch-sizes", "one", check=False)
    assert proc.returncode == 2 and "expected integers" in proc.stderr


def test_flops_equal_a_count_from_the_keras_layers(resnet8_onnx):
    from conftest import RESNET8
    from fexport.exporter.load import load_file

    model = load_file(RESNET8)[0]
    cut = model.layers[:[layer.name for layer in model.layers].index("activation_6") + 1]
    expected = sum(2 * math.prod(layer.output.shape[1:]) * math.prod(layer.kernel_size)
                   * layer.input.shape[-1] for layer in cut if type(layer).__name__ == "Conv2D")
    assert flops.flops_per_image(resnet8_onnx) == expected > 0


def test_suite_writes_json_markdown_and_png(resnet8_onnx, photos, tmp_path):
    onnx_path = tmp_path / "resnet8.onnx"
    onnx_path.write_bytes(resnet8_onnx.read_bytes())
    entry = {"model": "ResNet8", "head": "avg",
             "gflops_per_image": flops.flops_per_image(onnx_path) / 1e9}
    int8 = suite.quantize(onnx_path, photos, entry)
    entry["runs"] = [suite.bench(onnx_path, (1, 8), 2, photos, "cpu", True, [int8])]
    entry["cold_start"] = suite.cold_start(onnx_path, photos, tmp_path)
    data = {"machine": machine(), "matmul_gflops": matmul.rates(size=256, repeats=2),
            "models": [entry]}
    json_file, md, png = suite.write(data, tmp_path / "results")
    assert json.loads(json_file.read_text())["models"][0]["model"] == "ResNet8"
    text = md.read_text()
    for heading in ("Latency and throughput", "INT8 against float32", "Folder extraction",
                    "Cold start", "Targets"):
        assert f"## {heading}" in text
    assert [r["runtime"] for r in entry["runs"][0]["results"][:4]] == [
        "onnxruntime", "onnxruntime int8", "keras.predict", "keras.__call__"]
    cold = entry["cold_start"]
    assert cold["onnxruntime"]["seconds"] > 0 and cold["keras"]["peak_rss_mib"] > 0
    judged = list(report.targets(data))
    assert {t[0] for t in judged} >= {"batch-8 throughput vs Keras predict",
                                      "cold start vs Keras", "INT8 min cosine to float32"}
    assert all(value is not None and value > 0 for _, _, value, _, _ in judged)
    with Image.open(png) as image:
        assert image.size == (900, 420)


def test_suite_models_are_registered():
    from fexport import models
    from fexport.exporter import heads

    for name, head in suite.MODELS + suite.QUICK_MODELS:
        assert models.get(name).name == name and head in heads.HEADS
