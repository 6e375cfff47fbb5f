"""The end-to-end suite: image files in, features out, each stage alone and the whole, one run.

    python -m fexport.bench.pipeline            # ResNet50 avg (random weights) and ResNet-8
    python -m fexport.bench.pipeline --quick    # ResNet-8 only, one pass a cell

For each model, image set, decode quality and decoder (threads or processes): decoding alone
(the extractor's own decoders, batch buffers and loading options), the engine alone (the same
batches) and `extract` on the files, end to end. Decoding and the engine share the machine's
cores, so without any overhead of its own the pipeline runs at least 1 / (decode time + engine
time) per image: the "end to end / serial" column. Each cell is the best of `passes` timed
passes after a warm-up.
Results: bench/results/pipeline-<cpu>-<cores>cores-ort<version>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fexport.runtime import FeatureExtractor, decoding, timing
from fexport.runtime.files import images

from . import pipeline_report, publish, suite

RESULTS = suite.RESULTS
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
MODELS = (("ResNet50", ["resnet50", "--weights", "none", "--head", "avg"]),
          ("ResNet-8", [str(DATA / "mlcommons_tiny_cifar10_pretrainedResnet.h5"), "--layer",
                        "activation_6", "--head", "avg"]))
LARGE = (2560, 1600)  # a phone photo's pixel count, where decoding costs the most
BATCH = 32
# Timed passes of a cell fill at least this long: a pass of the tiny model over 48 photos takes
# 50 ms, and on this project's shared 2-core VM the best of 3 such passes moved by up to 40%
# between two runs of the suite.
MIN_SECONDS = 2.0


def run(models, workdir: Path, passes: int) -> dict:
    sets = {"photos": suite.make_image_folder(workdir / "photos", 48),
            "large": _large_folder(workdir / "large", 24)}
    data = {"machine": timing.machine(), "load_before": publish.settled_load(), "passes": passes,
            "min_seconds": MIN_SECONDS,
            "batch_size": BATCH, "image_sets": {name: _describe(folder)
                                                for name, folder in sets.items()},
            "models": []}
    for name, export_args in models:
        onnx = workdir / f"{name}.onnx"
        suite._run_fexport(*export_args, "-o", onnx, "--overwrite")
        rows = [_cell(onnx, set_name, images.list_images(folder), quality, decode, passes)
                for set_name, folder in sets.items() for quality in images.DECODE_QUALITIES
                for decode in decoding.DECODERS]
        data["models"].append({"model": name, "rows": rows})
    data["load_after"] = os.getloadavg()[0]
    return data


def _large_folder(folder: Path, count: int) -> Path:
    """The real sample photos re-encoded at LARGE, JPEG quality 90."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = suite._sample_photos()
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as image:
            large = image.convert("RGB").resize(LARGE, Image.Resampling.BICUBIC)
            large.save(folder / f"large_{i:03d}.jpg", quality=90 - i // len(sources))
    return folder


def _describe(folder: Path) -> dict:
    files = images.list_images(folder)
    return {"images": len(files), "mean_kib": round(sum(map(os.path.getsize, files)) /
                                                    len(files) / 1024, 1)}


def _cell(onnx, set_name, files, quality, decode, passes) -> dict:
    extractor = FeatureExtractor(onnx, decode_quality=quality, decode=decode)
    try:
        pixels = _decode_all(extractor, files)
        calls = {"decode": lambda: _decode_only(extractor, files),
                 "engine": lambda: _engine(extractor, pixels),
                 "pipeline": lambda: extractor.extract(files, BATCH)}
        timings = {stage: timing.best_of(call, passes, MIN_SECONDS)
                   for stage, call in calls.items()}
    finally:
        extractor.close()
    return {"images": set_name, "decode_quality": quality, "decoder": decode,
            "count": len(files), "workers": extractor.workers,
            **{f"{stage}_images_per_s": round(len(files) / seconds, 1)
               for stage, seconds in timings.items()}}


def _decode_all(extractor, files) -> list:
    """Every file decoded as extract decodes it (its decoder and batch buffers), kept."""
    return [batch.pixels for batch in extractor.pixels(files, BATCH)]


def _decode_only(extractor, files) -> None:
    """The same decoding, the pixels dropped as they come: decoding alone."""
    for _ in extractor.pixels(files, BATCH, copy=False):
        pass


def _engine(extractor, batches) -> None:
    """The engine on the decoded batches, as extract runs it."""
    for batch in batches:
        extractor.engine.run(batch)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-8 only, one pass a cell")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--workdir", default=str(RESULTS / "work" / "pipeline"))
    parser.add_argument("--allow-load", action="store_true",
                        help="write results even when the machine was busy (marked so)")
    args = parser.parse_args(argv)
    models, passes = (MODELS[1:], 1) if args.quick else (MODELS, args.passes)
    data = run(models, Path(args.workdir), passes)
    if message := publish.refusal(data, args.allow_load):
        print(message, file=sys.stderr)
        return 1
    stem = Path(args.results) / publish.result_stem("pipeline", data["machine"])
    for path in publish.write(data, stem, pipeline_report.markdown(data)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
