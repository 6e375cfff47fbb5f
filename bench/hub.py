"""DINOv2-S/14 at 224 from KerasHub: exported, verified, optimized and timed against Keras
(issue #26's goals).

    python -m fexport.bench.hub

Builds DINOv2-S/14 (12 blocks, 384 wide, random weights with seed 0: no preset can be
downloaded here) and saves it as a local preset with an ImageConverter (ImageNet mean and std,
bicubic resize), exports it through the CLI with the cls+mean head and verifies it on 32
photos, runs `fexport optimize` at batch 8 (32 photos calibrate, 32 others judge), then times
Keras `predict`, float32 and the chosen variant in one `fexport bench` run. Quiet machine only
(the load average is recorded; --allow-load for smoke runs).
Writes bench/results/hub-<cpu>-<flags>.json and .md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import engines, optimized, publish, suite

WORK = engines.RESULTS / "work" / "hub"
BATCH = 8
# Issue #26's goals: ONNX against Keras at float32, and the fastest verified variant against
# Keras predict at batch 8.
GOAL_COSINE = 0.9999
GOAL_SPEEDUP = 3.0
# Entropy's KL threshold search ran past 13 minutes on DINOv2-S's ~1000 activations (and ONNX
# Runtime's histogram calibrators held 17 GB for 32 photos), and accuracy control re-evaluates
# the model many times: the suite tries the three that fit in a run.
METHODS = "percentile,minmax,nncf"
# `fexport bench` rows that time image loading (and the whole pipeline), not an engine.
PIPELINE_ROWS = ("decode+resize", "end-to-end")
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def make_preset(path: Path) -> Path:
    """DINOv2-S/14 with random weights and DINOv2's ImageNet normalization, as a preset."""
    if (path / "model.weights.h5").exists():
        return path
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    keras_hub.models.DINOV2Backbone(
        patch_size=14, num_layers=12, hidden_dim=384, num_heads=6, intermediate_dim=1536,
        image_shape=(224, 224, 3), position_embedding_shape=(518, 518, 3)).save_to_preset(
        str(path))
    keras_hub.layers.ImageConverter(
        image_size=(224, 224), interpolation="bicubic",
        scale=[1 / (255 * s) for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).save_to_preset(str(path))
    return path


def run(iters) -> dict:
    for stale in WORK.glob("*.optimized.onnx"):
        stale.unlink()
    images = suite.make_image_folder(WORK / "images")
    calibration, evaluation = engines._split(images, WORK)
    data = {"machine": suite.machine(), "load_before": publish.settled_load()}
    preset, fp32 = make_preset(WORK / "dinov2_s"), WORK / "dinov2_s.onnx"
    suite._run_fexport(preset, "--head", "cls+mean", "-o", fp32, "--overwrite",
                       "--verify-images", evaluation, "--report", WORK / "verification.json")
    data["verification"] = json.loads((WORK / "verification.json").read_text())
    data["optimize"] = optimized._optimize(fp32, (calibration, evaluation), BATCH, iters,
                                           METHODS)
    chosen = fp32.with_suffix(f".b{BATCH}.optimized.onnx")
    data["bench"] = suite.bench(fp32, [BATCH], iters, images, "cpu", compare_keras=True,
                                variants=[chosen] if chosen.exists() else [])
    data["load_after"] = os.getloadavg()[0]
    data["goals"] = goals(data)
    return data


def goals(data) -> dict:
    rows = {r["runtime"]: r["images_per_s"] for r in data["bench"]["results"]}
    keras = rows["keras.predict"]
    rows = {name: speed for name, speed in rows.items()  # the engines, not Keras or the loader
            if not name.startswith("keras") and name not in PIPELINE_ROWS}
    fastest = max(rows, key=rows.get)
    cosine = data["verification"]["min_cosine"]
    return {"min_cosine": cosine, "cosine_met": cosine >= GOAL_COSINE, "fastest": fastest,
            "speedup_vs_keras": rows[fastest] / keras,
            "speedup_met": rows[fastest] / keras >= GOAL_SPEEDUP}


def markdown(data) -> str:
    m, g = data["machine"], data["goals"]
    rows = data["bench"]["results"]
    keras = next(r["images_per_s"] for r in rows if r["runtime"] == "keras.predict")
    lines = [f"# DINOv2-S/14 at 224 (KerasHub, random weights) on {m['cpu']} "
             f"({', '.join(m['cpu_flags']) or 'no AVX-512'}), {m['cores']} cores", "",
             f"Load average {data['load_before']:.2f} before, {data['load_after']:.2f} after; "
             f"batch {BATCH}; head cls+mean (768 features).", "",
             f"- ONNX against Keras (float32, random pixels and 32 photos): min cosine "
             f"{g['min_cosine']:.7f}; goal >= {GOAL_COSINE}: "
             f"{'met' if g['cosine_met'] else 'not met'}",
             f"- fastest verified: {g['fastest']}, {g['speedup_vs_keras']:.2f}x Keras predict; "
             f"goal >= {GOAL_SPEEDUP}x: {'met' if g['speedup_met'] else 'not met'}", "",
             "| runtime | images/s | vs Keras predict |", "|---|---:|---:|"]
    lines += [f"| {r['runtime']} | {r['images_per_s']:.1f} | " + (
        "(image loading)" if r["runtime"] in PIPELINE_ROWS else
        f"{r['images_per_s'] / keras:.2f}x") + " |" for r in rows]
    result = data["optimize"]
    lines += ["", "## fexport optimize, batch 8", "", *optimized._table(result["rows"])]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return publish.main(__doc__.splitlines()[0], run, markdown,
                        lambda machine: engines.RESULTS / engines.name_for(machine, "hub"),
                        20, argv)  # 5 read 3.67x or 2.2x: Keras predict is bimodal here


if __name__ == "__main__":
    sys.exit(main())
