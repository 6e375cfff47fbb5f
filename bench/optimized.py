"""`fexport optimize` on issue #25's models at batch 32 and 8, then the chosen VGG16 variant
against Keras.

    python -m fexport.bench.optimized

Exports the real VWW MobileNet and the real mini-Xception (tests/data) and VGG16 (random
weights) into bench/results/work/optimize, makes 64 photos from the dev wheels' real ones (32
calibrate, the 32 others judge), runs `fexport optimize` on each model at each of its batch
sizes, then times the VGG16 variant it wrote beside float32 and Keras `predict` in one run
(batch 8). Each run is checked against the issue's goal (`GOALS`). Quiet machine only, as the
engines suite (the load average is recorded; --allow-load for smoke runs).
Writes bench/results/optimize-<cpu>-<flags>.json and .md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import engines, publish, suite

WORK = engines.RESULTS / "work" / "optimize"
XCEPTION = engines.VWW.parent / "oarriaga_fer2013_mini_XCEPTION.102-0.66.hdf5"
_EXPORTS = dict(engines.MODELS)
# (name, what to export, batch sizes to optimize at).
MODELS = (("VWW-MobileNet", _EXPORTS["VWW-MobileNet"], (32, 8)),
          ("mini-Xception", [str(XCEPTION), "--layer", "add_4", "--head", "avg",
                             "--preprocess", "tf"], (32, 8)),
          ("VGG16", _EXPORTS["VGG16"], (8,)))
# Issue #25's goals: the chosen variant is INT8-based, at least this much faster than float32
# on ONNX Runtime at the same batch, with min cosine >= the gate on the held-out photos.
GOALS = {"VWW-MobileNet": 1.2, "mini-Xception": 1.2, "VGG16": 3.5}
GATE = 0.99


def run(iters, models=MODELS) -> dict:
    for stale in WORK.glob("*.optimized.onnx"):  # a run that writes nothing leaves nothing
        stale.unlink()
    images = suite.make_image_folder(WORK / "images")
    sets = engines._split(images, WORK)
    data = {"machine": suite.machine(), "load_before": publish.settled_load(), "runs": []}
    for name, export_args, batches in models:
        fp32 = WORK / f"{name}.onnx"
        suite._run_fexport(*export_args, "-o", fp32, "--overwrite")
        for batch in batches:
            result = _optimize(fp32, sets, batch, iters)
            data["runs"].append({"model": name, "batch": batch, **result,
                                 "goal": goal(name, result)})
    chosen = WORK / f"VGG16.b{engines.BATCH}.optimized.onnx"
    if chosen.exists():
        data["vgg16_bench"] = suite.bench(WORK / "VGG16.onnx", [engines.BATCH], iters, images,
                                          "cpu", compare_keras=True, variants=[chosen])
    data["load_after"] = os.getloadavg()[0]
    return data


def _optimize(model: Path, sets, batch, iters, methods=None) -> dict:
    calibration, evaluation = sets
    chosen = ["--methods", methods] if methods else []
    return json.loads(suite._run_fexport(
        "optimize", model, "--calibration-images", calibration, "--eval-images", evaluation,
        "--batch-size", batch, "--iters", iters, "--min-cosine", GATE, *chosen,
        "-o", model.with_suffix(f".b{batch}.optimized.onnx"), "--overwrite", "--json"))


def goal(model, result) -> dict:
    """Whether the run met the issue's goal for `model`, and the fastest passing INT8 row."""
    passing = [r for r in result["rows"] if r["precision"].startswith("int8")
               and r["verdict"] == "pass" and r["min_cosine"] >= GATE]
    best = max(passing, key=lambda r: r["speedup"], default=None)
    chosen = result["chosen"]
    met = bool(chosen and chosen["precision"].startswith("int8")
               and chosen["speedup"] >= GOALS[model] and chosen["min_cosine"] >= GATE)
    return {"speedup": GOALS[model], "min_cosine": GATE, "met": met, "best_int8": best}


def markdown(data) -> str:
    m = data["machine"]
    lines = [f"# fexport optimize on {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX-512'}),"
             f" {m['cores']} cores", "",
             f"Load average {data['load_before']:.2f} before, {data['load_after']:.2f} after; "
             f"32 calibration photos, 32 others judge; gate min cosine {GATE}.", "",
             "| model | batch | chosen | speedup | min cosine | goal (#25) |",
             "|---|---:|---|---:|---:|---|"]
    lines += [_summary_row(run) for run in data["runs"]]
    for run in data["runs"]:
        lines += ["", f"## {run['model']}, batch {run['batch']}", "", *_table(run["rows"])]
        lines += [f"- {note}" for note in _kept(run["rows"]) + run["notes"]]
    if "vgg16_bench" in data:
        lines += ["", *_keras_lines(data["vgg16_bench"])]
    return "\n".join(lines) + "\n"


def _summary_row(run) -> str:
    chosen, target = run["chosen"], run["goal"]
    best = target["best_int8"]
    verdict = "met" if target["met"] else "not met" + (
        f" (fastest passing INT8: {best['candidate']} on {best['backend']}, "
        f"{best['speedup']:.2f}x)" if best else " (no INT8 passes)")
    verdict = f"INT8 >= {target['speedup']}x: {verdict}"
    if not chosen:
        return f"| {run['model']} | {run['batch']} | none | | | {verdict} |"
    return (f"| {run['model']} | {run['batch']} | {chosen['candidate']} on "
            f"{chosen['backend']} | {chosen['speedup']:.2f}x | {chosen['min_cosine']:.4f} | "
            f"{verdict} |")


def _table(rows) -> list[str]:
    lines = ["| candidate | backend | images/s | speedup | min cosine | vs plain | nearest-5 "
             "| verdict |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        gain = "" if r.get("gain") is None else f"{r['gain']:+.4f}"
        lines.append(f"| {r['candidate']} | {r['backend']} | {r['images_per_s']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['min_cosine']:.4f} | {gain} | "
                     f"{r['nearest_5']:.0%} | {r['verdict']} |")
    return lines + [""]


def _kept(rows) -> list[str]:
    return [f"{r['candidate']} ({r['method']}) kept in float: {', '.join(r['kept_float'])}"
            for r in rows if r["kept_float"] and r["backend"] == "onnxruntime"]


def _keras_lines(bench) -> list[str]:
    rows = {r["runtime"]: r for r in bench["results"]}
    keras, fp32 = rows["keras.predict"], rows["onnxruntime"]
    variant = next(r for name, r in rows.items() if name.split()[-1] in ("int8", "bf16")
                   and not name.startswith("keras"))
    return ["## VGG16, the chosen variant against Keras (same run)", "",
            f"Keras predict {keras['images_per_s']:.1f} images/s, float32 "
            f"{fp32['images_per_s']:.1f}, {variant['runtime']} {variant['images_per_s']:.1f}: "
            f"{variant['images_per_s'] / keras['images_per_s']:.2f}x Keras predict."]


def main(argv=None) -> int:
    return publish.main(__doc__.splitlines()[0], run, markdown,
                        lambda machine: engines.RESULTS / engines.name_for(machine, "optimize"),
                        10, argv)


if __name__ == "__main__":
    sys.exit(main())
