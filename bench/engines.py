"""The engines suite: every backend and precision this host runs, against Keras, in one run.

    python -m fexport.bench.engines                # VGG16, ResNet50, the real VWW MobileNet
    python -m fexport.bench.engines --quick        # ResNet-8 only, a smoke run

For each model it exports float32 (random weights for the keras.applications ones, real ones for the
VWW MobileNet in tests/data), makes the verified variants (INT8 calibrated on 32 real photos; bf16,
and INT8 with its float parts in bf16, where the CPU has bf16 in hardware), judges each on 32 other
photos, then times at batch 8, interleaved in one process, fexport's call and the bare API of each
backend on each file, and Keras `predict` (`fexport bench --backends all --compare-keras`). Timing
needs a quiet machine: the 1-minute load average is recorded before and after, and the results are
not written when it was above publish.MAX_LOAD before the run (--allow-load for smoke runs).
Results: bench/results/engines-<cpu>-<flags>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fexport.runtime import host

from . import publish, suite

RESULTS = suite.RESULTS
VWW = Path(__file__).resolve().parents[1] / "tests" / "data" / "mlcommons_tiny_vww_96.h5"
# (name, what to export, flags): random-weight backbones and the real pretrained MobileNet.
MODELS = (("VGG16", ["vgg16", "--weights", "none", "--layer", "block5_pool", "--head",
                     "flatten"]),
          ("ResNet50", ["resnet50", "--weights", "none", "--head", "avg"]),
          ("VWW-MobileNet", [str(VWW), "--layer", "activation_26", "--head", "avg",
                             "--preprocess", "tf"]))
QUICK = (("ResNet-8", [str(VWW.parent / "mlcommons_tiny_cifar10_pretrainedResnet.h5"),
                       "--layer", "activation_6", "--head", "avg"]),)
BATCH = 8


def run(models, iters, workdir) -> dict:
    images = suite.make_image_folder(Path(workdir) / "images")
    calibration, evaluation = _split(images, Path(workdir))
    data = {"machine": suite.machine(), "load_before": publish.settled_load(), "models": []}
    for name, export_args in models:
        fp32 = Path(workdir) / f"{name}.onnx"
        suite._run_fexport(*export_args, "-o", fp32, "--overwrite")
        variants, quality = _variants(fp32, calibration, evaluation)
        timing = suite.bench(fp32, [BATCH], iters, images, "cpu", compare_keras=True,
                             variants=variants, extra=["--backends", "all"])
        data["models"].append({"model": name, "quality": quality, "run": timing})
    data["load_after"] = os.getloadavg()[0]
    return data


def _split(images, workdir):
    """32 photos calibrate, the 32 others judge: two folders, never the same photo."""
    paths = sorted(Path(images).iterdir())
    folders = workdir / "calibration", workdir / "evaluation"
    for folder, part in zip(folders, (paths[:32], paths[32:])):
        folder.mkdir(exist_ok=True)
        for path in part:
            target = folder / path.name
            if not target.exists():
                target.symlink_to(path)
    return folders


def _variants(fp32, calibration, evaluation):
    """The INT8 and (where native) bf16 files that pass their quality gate, and every
    report, passed or not."""
    made, quality = [], {}
    commands = {"int8": ["quantize", fp32, "--calibration-images", calibration]}
    if host.native_bf16():
        commands["bf16"] = ["convert", fp32, "--bf16"]
        commands["int8-bf16"] = [*commands["int8"], "--bf16"]
    for precision, command in commands.items():
        out = fp32.with_suffix(f".{precision}.onnx")
        try:
            suite._run_fexport(*command, "--eval-images", evaluation, "-o", out, "--overwrite")
            made.append(out)
        except RuntimeError as exc:  # below its gate: reported, not timed
            quality[precision] = {"refused": str(exc)[-300:]}
        if out.exists():
            quality[precision] = {**quality.get(precision, {}), **_report(out)}
    return made, quality


def _report(path) -> dict:
    """The variant's quality report as it goes into the results' JSON."""
    from fexport.runtime.contract import stored_contract

    report = stored_contract(path).quantization
    return report.to_dict() if report else {}


def name_for(machine, suite_name="engines") -> str:
    """The results' file stem: the suite, the CPU and its flags."""
    cpu = "-".join(machine["cpu"].split()[:2]).lower()
    return f"{suite_name}-{cpu}-{'-'.join(machine['cpu_flags']) or 'baseline'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-8 only, 3 iterations")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--allow-load", action="store_true",
                        help="write results although the machine was busy (smoke runs)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--workdir", default=str(RESULTS / "work" / "engines"))
    args = parser.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    models, iters = (QUICK, 3) if args.quick else (MODELS, args.iters)
    data = run(models, iters, args.workdir)
    if message := publish.refusal(data, args.allow_load):
        print(message, file=sys.stderr)
        return 1
    written = publish.write(data, Path(args.results) / name_for(data["machine"]),
                            markdown(data))
    print(written[-1])
    return 0


def markdown(data) -> str:
    m = data["machine"]
    lines = [f"# Engines on {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores",
             "", f"Load average {data['load_before']:.2f} before, {data['load_after']:.2f} "
             f"after{'' if data.get('quiet') else ' (NOT a quiet machine: smoke run)'}; batch "
             f"{BATCH}; onnxruntime {m['onnxruntime']}, openvino {m.get('openvino', '-')}.", ""]
    for entry in data["models"]:
        lines += _model_table(entry)
    return "\n".join(lines) + "\n"


def _model_table(entry) -> list[str]:
    rows = {r["runtime"]: r for r in entry["run"]["results"] if r["batch"] == BATCH}
    keras = rows.get("keras.predict")
    lines = [f"## {entry['model']}", "",
             "| runtime | images/s | x Keras predict | x bare API | min cosine to float32 |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if name.startswith("bare ") or name in ("decode+resize", "end-to-end"):
            continue
        bare = rows.get("bare " + name.removeprefix("fexport "))
        precision = name.split()[-1]
        cosine = entry["quality"].get(precision, {}).get("min_cosine")
        lines.append(f"| {name} | {row['images_per_s']:.1f} | "
                     f"{_ratio(row, keras)} | {_ratio(row, bare)} | "
                     f"{'1 (reference)' if precision == 'fp32' else _num(cosine)} |")
    lines += ["", fastest_verified(entry, rows, keras)]
    lines += [f"\nNot timed: {Path(s['file']).name} on {s['backend']}: {s['reason']}"
              for s in entry["run"].get("skipped", [])]
    lines += [f"\nRefused, not timed: {precision}: {_why(q['refused'])}"
              for precision, q in entry["quality"].items() if "refused" in q]
    return lines + [""]


def _why(refusal: str) -> str:
    """fexport's own line out of the failed command's output."""
    return refusal.split("fexport: error: ", 1)[-1].strip()


def fastest_verified(entry, rows, keras) -> str:
    """fexport's fastest call among float32 and the variants that passed their gate."""
    passed = {"fp32"} | {p for p, q in entry["quality"].items()
                         if q.get("passed") and "refused" not in q}
    ours = [(row["images_per_s"], name) for name, row in rows.items()
            if name.startswith("fexport ") and name.split()[-1] in passed]
    rate, name = max(ours)
    versus = f", {rate / keras['images_per_s']:.2f}x Keras predict" if keras else ""
    return f"Fastest verified: **{name.removeprefix('fexport ')}**, {rate:.1f} images/s{versus}."


def _ratio(row, other) -> str:
    return f"{row['images_per_s'] / other['images_per_s']:.2f}x" if other else "-"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
