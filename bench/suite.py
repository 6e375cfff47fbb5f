"""The benchmark suite: fexport's ONNX Runtime extractor against Keras on one machine, one run.

    python -m fexport.bench.suite                 # full matrix, about 15 minutes on 2 cores
    python -m fexport.bench.suite --quick         # one small model, a few iterations (a smoke run)

For each model (random weights: speed does not depend on their values) it exports the ONNX
file, then times ONNX Runtime, Keras `predict` and a direct Keras call interleaved in one
process (`fexport bench --compare-keras`) at batch 1/8/32, plus folder extraction (JPEG decode,
resize, inference), cold start (a fresh process that imports, loads and extracts one image) and
peak memory of both. The machine's FP32 limit is a measured matmul rate; each model's FLOPs per
image say what fraction of it each runtime reaches. Results go to bench/results/<setup>.json,
.md and .png, where <setup> names the device and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fexport.runtime.files import atomic
from fexport.runtime.timing import machine

from . import chart, flops, matmul, report

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = (("VGG16", "flatten"), ("ResNet50", "avg"), ("MobileNetV2", "avg"),
          ("EfficientNetB0", "avg"))
QUICK_MODELS = (("MobileNetV2", "avg"),)
INT8_MODELS = ("VGG16", "ResNet50")  # issue #5/#6: INT8 against FP32 in the same run
CALIBRATION_SAMPLES = 32  # of the 64 suite images; the other 32 judge the INT8 features
BATCH_SIZES = (1, 8, 32)
COLD_STARTS = 3  # fresh processes per side; the median is reported


def run_suite(models, batch_sizes, iters, workdir, devices=("cpu",)) -> dict:
    images = make_image_folder(Path(workdir) / "images")
    data = {"machine": machine(), "matmul_gflops": matmul.rates(), "models": []}
    for name, head in models:
        onnx_path = export(name, head, workdir)
        entry = {"model": name, "head": head, "gflops_per_image": flops.flops_per_image(
            onnx_path) / 1e9, "runs": []}
        variants = [quantize(onnx_path, images, entry)] if name in INT8_MODELS else []
        for device in devices:
            entry["runs"].append(bench(onnx_path, batch_sizes, iters, images, device,
                                       compare_keras=device == "cpu", variants=variants))
        entry["cold_start"] = cold_start(onnx_path, images, workdir)
        data["models"].append(entry)
    return data


def export(name, head, workdir) -> Path:
    path = Path(workdir) / f"{name}_{head}.onnx"
    if not path.exists():
        _run_fexport(name, "--weights", "none", "--head", head, "-o", path)
    return path


def quantize(onnx_path, images, entry) -> Path:
    """The INT8 variant, calibrated on the first images; its quality report goes in `entry`."""
    from fexport.runtime.extractor import FeatureExtractor

    int8 = Path(onnx_path).with_suffix(".int8.onnx")
    _run_fexport("quantize", onnx_path, "--calibration-images", images, "--samples",
                 CALIBRATION_SAMPLES, "-o", int8, "--overwrite")
    entry["int8_quality"] = FeatureExtractor(int8, device="cpu").contract.quantization.to_dict()
    return int8


def bench(onnx_path, batch_sizes, iters, images, device, compare_keras, variants=(),
          extra=()) -> dict:
    args = [onnx_path, "--batch-sizes", ",".join(map(str, batch_sizes)), "--iters", iters,
            "--warmup", 2, "--images", images, "--device", device, "--json", *extra]
    args += [a for v in variants for a in ("--variant", v)]
    return json.loads(_run_fexport("bench", *args,
                                   *(["--compare-keras"] if compare_keras else [])))


def _run_fexport(*args) -> str:
    command = [sys.executable, "-m", "fexport", *map(str, args)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def make_image_folder(folder, count=64) -> Path:
    """JPEGs at typical photo sizes, made from the real sample photos in the dev wheels: each
    photo cropped and resized a few ways, so no two files are the same image."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = _sample_photos()
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as image:
            w, h = image.size
            crop = 0.1 * (i // len(sources) % 4)
            box = (int(w * crop), int(h * crop / 2), w, h - int(h * crop / 2))
            image = image.convert("RGB").crop(box).resize((640 - 32 * (i % 5),
                                                           480 - 24 * (i % 3)))
            image.save(folder / f"photo_{i:03d}.jpg", quality=90)
    return folder


def _sample_photos() -> list[Path]:
    import skimage
    import sklearn.datasets

    data = Path(skimage.__file__).parent / "data"
    names = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg",
             "motorcycle_left.png", "hubble_deep_field.jpg", "color.png", "ihc.png",
             "camera.png", "moon.png", "horse.png", "brick.png", "coins.png")
    sklearn_images = Path(sklearn.datasets.__file__).parent / "images"
    return [data / n for n in names] + [sklearn_images / n for n in ("china.jpg", "flower.jpg")]


# The peak is VmHWM, this process image's own high-water mark: ru_maxrss would also count the
# parent's memory, which Linux carries across the fork and exec that start the child.
PEAK = """
def peak_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
"""

COLD_ONNX = PEAK + """
import sys
from fexport.runtime import FeatureExtractor
FeatureExtractor(sys.argv[1], device="cpu").extract([sys.argv[2]])
print(peak_mib())
"""

COLD_KERAS = PEAK + """
import sys
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1], compile=False)
size = model.input_shape[1:3]
x = keras.utils.img_to_array(keras.utils.load_img(sys.argv[2], target_size=size))[None]
model.predict(x, verbose=0)
print(peak_mib())
"""


def cold_start(onnx_path, images, workdir) -> dict:
    """Median wall time and peak memory of a fresh process doing one image, per side."""
    keras_file = Path(workdir) / f"{Path(onnx_path).stem}.keras"
    if not keras_file.exists():
        _save_keras(onnx_path, keras_file)
    image = str(sorted(Path(images).iterdir())[0])
    return {"onnxruntime": _cold(COLD_ONNX, onnx_path, image),
            "keras": _cold(COLD_KERAS, keras_file, image)}


def _save_keras(onnx_path, keras_file) -> None:
    code = ("import sys; from fexport.exporter.keras_side import save_keras_model; "
            "from fexport.runtime.extractor import FeatureExtractor; "
            "save_keras_model(FeatureExtractor(sys.argv[1], 'cpu').contract, sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(onnx_path), str(keras_file)], check=True,
                   capture_output=True)


def _cold(code, model, image) -> dict:
    seconds, peaks = [], []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for _ in range(COLD_STARTS):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, str(model), image], check=True,
                              capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - start)
        peaks.append(float(proc.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(seconds), "peak_rss_mib": max(peaks)}


def setup_name(m) -> str:
    device = "cuda" if m.get("gpu") else "cpu"
    cpu = "-".join(m["cpu"].split()[:2]).lower()
    return (f"{device}-{cpu}-{m['cores']}cores-ort{m['onnxruntime']}"
            f"-keras{m.get('keras', 'none')}")


def write(data, results=RESULTS) -> list[Path]:
    Path(results).mkdir(parents=True, exist_ok=True)
    json_file, md, png = (Path(results) / f"{setup_name(data['machine'])}{suffix}"
                          for suffix in (".json", ".md", ".png"))
    atomic.write_bytes(json_file, json.dumps(data, indent=1).encode())
    atomic.write_bytes(md, report.markdown(data).encode())
    with atomic.atomic_path(png) as tmp:
        chart.save(data, tmp)
    return [json_file, md, png]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one model, 3 iterations")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--workdir", default=str(RESULTS / "work"))
    args = parser.parse_args(argv)
    import onnxruntime as ort

    devices = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in
                         ort.get_available_providers() else [])
    models, iters = (QUICK_MODELS, 3) if args.quick else (MODELS, args.iters)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    data = run_suite(models, BATCH_SIZES, iters, args.workdir, devices)
    for path in write(data, args.results):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
