"""`fexport optimize` on the issue's models, then the chosen VGG16 variant against Keras.

    python -m fexport.bench.optimized      # after `python -m fexport.bench.engines`

Reuses the engines suite's float32 files and its 32 + 32 photos (bench/results/work/engines),
runs `fexport optimize` on the real VWW MobileNet, the real mini-Xception and VGG16, then times
the VGG16 variant it wrote beside float32 and Keras `predict` in one run (batch 8). Quiet
machine only, as the engines suite (the load average is recorded; --allow-load for smoke runs).
Writes bench/results/optimize-<cpu>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import engines, publish, suite

WORK = engines.RESULTS / "work" / "engines"
XCEPTION = engines.VWW.parent / "oarriaga_fer2013_mini_XCEPTION.102-0.66.hdf5"


def run(iters) -> dict:
    data = {"machine": suite.machine(), "load_before": publish.settled_load(), "models": {}}
    xception = WORK / "mini-Xception.onnx"
    suite._run_fexport(XCEPTION, "--layer", "add_4", "--head", "avg", "--preprocess", "tf",
                       "-o", xception, "--overwrite")
    for name in ("VWW-MobileNet", "mini-Xception", "VGG16"):
        data["models"][name] = _optimize(WORK / f"{name}.onnx", iters)
    chosen = WORK / "VGG16.optimized.onnx"
    if chosen.exists():
        data["vgg16_bench"] = suite.bench(WORK / "VGG16.onnx", [engines.BATCH], iters,
                                          WORK / "images", "cpu", compare_keras=True,
                                          variants=[chosen])
    data["load_after"] = os.getloadavg()[0]
    return data


def _optimize(model, iters) -> dict:
    return json.loads(suite._run_fexport(
        "optimize", model, "--calibration-images", WORK / "calibration", "--eval-images",
        WORK / "evaluation", "--iters", iters, "-o", model.with_suffix(".optimized.onnx"),
        "--overwrite", "--json"))


def markdown(data) -> str:
    m = data["machine"]
    lines = [f"# fexport optimize on {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} "
             f"cores", "", f"Load average {data['load_before']:.2f} before, "
             f"{data['load_after']:.2f} after; batch {engines.BATCH}; 32 calibration photos, "
             "32 others judge.", ""]
    for name, result in data["models"].items():
        lines += [f"## {name}", "", "| candidate | backend | images/s | speedup | min cosine "
                  "| nearest-5 | verdict |", "|---|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r['candidate']} | {r['backend']} | {r['images_per_s']:.1f} | "
                  f"{r['speedup']:.2f}x | {r['min_cosine']:.4f} | {r['nearest_5']:.0%} | "
                  f"{r['verdict']} |" for r in result["rows"]]
        chosen = result["chosen"]
        lines += ["", f"Chosen: {chosen['candidate']} on {chosen['backend']}." if chosen else
                  "Chosen: none (" + "; ".join(result["notes"]) + ").", ""]
    if "vgg16_bench" in data:
        rows = {r["runtime"]: r for r in data["vgg16_bench"]["results"]}
        keras, fp32 = rows["keras.predict"], rows["onnxruntime"]
        variant = next(r for name, r in rows.items() if name.split()[-1] in ("int8", "bf16")
                       and not name.startswith("keras"))
        lines += ["## VGG16, the chosen variant against Keras (same run)", "",
                  f"Keras predict {keras['images_per_s']:.1f} images/s, float32 "
                  f"{fp32['images_per_s']:.1f}, {variant['runtime']} "
                  f"{variant['images_per_s']:.1f}: "
                  f"{variant['images_per_s'] / keras['images_per_s']:.2f}x Keras predict.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--allow-load", action="store_true")
    args = parser.parse_args(argv)
    data = run(args.iters)
    if message := publish.refusal(data, args.allow_load):
        print(message, file=sys.stderr)
        return 1
    written = publish.write(data, engines.RESULTS / engines.name_for(data["machine"],
                                                                     "optimize"), markdown(data))
    print(written[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
