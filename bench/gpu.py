"""The GPU suite: ONNX Runtime on CUDA, float32 and the verified FP16 variant (and, on fexport's
device "tensorrt" where its provider loads, TensorRT FP16 and INT8 engines with their build and
cached start times: bench/gpu_tensorrt.py), against PyTorch eager on the same GPU, in one run.

    python -m fexport.bench.gpu MODELS_DIR [--results DIR]

MODELS_DIR holds vgg16.onnx (block5_pool, flatten) and resnet50.onnx (avg) exported by fexport
(bench/gpu_carry.py makes them travel). For each model: the FP16 variant is made and judged
against float32 on real photos it runs on (CUDA); then, at batch 1, 32, 128 and 256, interleaved
round by round: fexport's call and the bare onnxruntime API for each file, and torchvision's
network in PyTorch eager (channels_last, FP16 autocast) when torch is installed. Images/s from
arrays (host memory in, host memory out: the copies are counted), then end to end from JPEG files
with every CPU core decoding, beside the decode rate alone: the smaller one is the bottleneck,
and the GPU's utilisation sampled meanwhile; and with `--decode gpu` (nvImageCodec, batches kept
on the GPU) where it loads, with the count of files that fell back to the CPU, else its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fexport.runtime import benchmark, decoding, timing
from fexport.runtime.batches import BatchLayout
from fexport.runtime.extractor import FeatureExtractor
from fexport.runtime.files import atomic, images
from fexport.runtime.timing import Runner

from . import gpu_tensorrt, suite

RESULTS = suite.RESULTS
BATCH_SIZES = (1, 32, 128, 256)
MODELS = (("VGG16", "vgg16"), ("ResNet50", "resnet50"))
ITERS = 10  # rounds; each gives every runtime timing.TURN_S of back-to-back calls
JPEGS = 512  # photo-sized JPEG files for the end-to-end rate
E2E_BATCH = 256
CPU_DECODERS = ("threads", "processes")


def run(models_dir: Path, iters: int, workdir: Path, results: Path, device="cuda",
        batch_sizes=BATCH_SIZES, jpeg_count=JPEGS) -> dict:
    """Every model in turn; the results are written after each, so a cut-off run keeps them."""
    photos = suite.make_image_folder(workdir / "photos", 32)
    jpegs = sorted(map(str, suite.make_image_folder(workdir / "jpegs", jpeg_count).iterdir()))
    data = {"machine": machine(), "batch_sizes": list(batch_sizes), "models": [],
            "decode_scaling": decode_scaling(jpegs)}  # before any engine holds a thread
    for name, stem in MODELS:
        fp32 = models_dir / f"{stem}.onnx"
        if not fp32.exists():  # a shorter run carries fewer models
            continue
        fp16, quality = fp16_variant(fp32, photos, workdir)
        entry = {"model": name, "quality": quality, "skipped": [],
                 "float32_max_rel_to_cpu": max_rel_to_cpu(fp32, photos, device)}
        contract = benchmark.contract_of(fp32, device, None)  # the variant's input is the same
        runners = runners_for(fp32, fp16, stem, contract, device, entry["skipped"])
        runners += _optional(lambda: _tensorrt(entry, fp32, fp16, photos, workdir),
                             "TensorRT FP16 and INT8", entry["skipped"])
        entry["results"] = [row for n in batch_sizes for row in timing.bench_batch(
            runners, timing.random_pixels(contract, n), 3, iters, None)]
        entry["end_to_end"] = end_to_end(fp16, jpegs, device, _rate(entry))
        data["models"].append(entry)
        write(data, results)
    return data


def machine() -> dict:
    found = timing.machine()
    found["cuda"] = _torch_cuda_version()
    found["decode_threads"] = len(os.sched_getaffinity(0))
    return found


def _torch_cuda_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def fp16_variant(fp32: Path, photos: Path, workdir: Path) -> tuple[Path, dict]:
    """The FP16 file, judged on CUDA against float32 on the real photos."""
    from fexport.errors import VerificationError
    from fexport.precision.quantize import QuantizeOptions, quantize

    output = workdir / f"{fp32.stem}.fp16.onnx"
    options = QuantizeOptions(model=str(fp32), output=str(output), precision="fp16",
                              evaluation_images=sorted(map(str, photos.iterdir())))
    try:
        report = quantize(options)
    except VerificationError as exc:
        report = exc.report
    return output, report.to_dict()


def max_rel_to_cpu(fp32: Path, photos: Path, device: str) -> float:
    """float32 on `device` against the CPU on the real photos: max |diff| / max |cpu|."""
    paths = sorted(map(str, photos.iterdir()))[:8]
    from fexport.comparison import max_rel

    cpu = FeatureExtractor(fp32, "cpu").extract(paths, batch_size=8)
    return max_rel(cpu, FeatureExtractor(fp32, device).extract(paths, batch_size=8))


def runners_for(fp32: Path, fp16: Path, stem: str, contract, device: str,
                skipped: list) -> list[Runner]:
    runners = []
    for path in (fp32, fp16):
        extractor = FeatureExtractor(path, device, backend="onnxruntime")
        runners += [Runner(f"fexport {extractor.ran}", extractor.predict),
                    benchmark.bare_runner(extractor)]
    runners += _optional(lambda: [nchw_runner(fp16, contract)], "CUDA FP16 NCHW", skipped)
    runners += _optional(lambda: [torch_runner(stem, contract)], "PyTorch", skipped)
    return runners


def _optional(make, what, skipped) -> list[Runner]:
    try:
        return make()
    except Exception as exc:  # an engine this machine lacks: say why, time the others
        skipped.append({"runtime": what, "reason": f"{type(exc).__name__}: {exc}"[:500]})
        return []


def nchw_runner(fp16: Path, contract) -> Runner:
    """The FP16 file as a plain onnxruntime session runs it (NCHW convolutions, onnxruntime's
    thread defaults): what fexport's CUDA settings are measured against."""
    from fexport.runtime.backends.onnxruntime_backend import CUDA, CUDA_OPTIONS

    return _session_runner(fp16, [(CUDA, CUDA_OPTIONS)], contract,
                           "bare onnxruntime cuda fp16, NCHW (plain session)")


def _tensorrt(entry, fp32: Path, fp16: Path, photos: Path, workdir: Path) -> list[Runner]:
    """The TensorRT engines' runners; their build, cached start and quality in the entry."""
    files = gpu_tensorrt.variants(fp32, fp16, photos, workdir)
    entry["tensorrt"] = gpu_tensorrt.report(files, fp32, photos, workdir)
    return gpu_tensorrt.runners(files)


def _session_runner(path: Path, providers: list, contract, name: str) -> Runner:
    """A plain session whose first provider must be the one asked for (onnxruntime falls back
    silently), called once here so that a failure is skipped with its reason, not mid-timing."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=providers)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != wanted:
        raise RuntimeError(f"{wanted} did not load (its libraries missing?); the session got "
                           f"{session.get_providers()}")
    runner = benchmark.onnx_runner(session, contract)
    runner.name = name
    runner.call(timing.random_pixels(contract, 2))
    return runner


def torch_runner(stem: str, contract) -> Runner:
    """torchvision's network to the same cut, eager, channels_last, FP16 autocast, with the same
    caffe preprocessing and the copies to and from the GPU counted."""
    import torch
    import torchvision

    network = {"vgg16": lambda: torchvision.models.vgg16(weights=None).features,
               "resnet50": lambda: _resnet50_trunk(torch, torchvision)}[stem]()
    network = network.cuda().eval().to(memory_format=torch.channels_last)
    mean = torch.tensor([103.939, 116.779, 123.68], device="cuda").view(1, 3, 1, 1)

    def call(pixels):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            x = torch.from_numpy(pixels).cuda().permute(0, 3, 1, 2).flip(1) - mean
            return network(x.contiguous(memory_format=torch.channels_last)).flatten(1).float() \
                .cpu().numpy()
    call(timing.random_pixels(contract, 2))  # fails here, skipped with its reason, not mid-timing
    return Runner("torch eager cuda fp16 (channels_last, autocast)", call)


def _resnet50_trunk(torch, torchvision):
    model = torchvision.models.resnet50(weights=None)
    return torch.nn.Sequential(*list(model.children())[:-1])  # through the global avg pool


def decode_scaling(paths: list[str]) -> dict:
    """Images/s decoding alone (decode, resize, to float32): threads 1, 4 and all cores, and
    as many processes ("processes N")."""
    from fexport.runtime.files.images import LoadOptions

    options, cores = LoadOptions(height=224, width=224, channels=3), len(os.sched_getaffinity(0))
    rates = {str(n): _decode_rate(paths, options, n) for n in sorted({1, 4, cores})}
    rates[f"processes {cores}"] = _decode_rate(paths, options, cores, "processes")
    return rates


def _decode_rate(paths, options, workers, decode="threads") -> float:
    """Images/s decoding into float32 batches as a run decodes, after one warm-up batch (the
    processes start)."""
    decoder = decoding.decoder(decode, workers)
    layout = BatchLayout((options.height, options.width, options.channels), "float32", "nhwc",
                         True)
    try:
        decoding.decode_all(decoder, paths[:workers], options, layout)
        start = time.perf_counter()
        decoding.decode_all(decoder, paths, options, layout)
        return len(paths) / (time.perf_counter() - start)
    finally:
        decoder.close()


def _rate(entry) -> float:
    """fexport's own FP16 call at the end-to-end batch, from arrays."""
    rows = [r for r in entry["results"] if r["runtime"].startswith("fexport")
            and r["runtime"].endswith("fp16") and "tensorrt" not in r["runtime"]]
    return max(rows, key=lambda r: r["batch"])["images_per_s"]


def end_to_end(model: Path, paths: list[str], device="cuda", arrays_rate=0.0) -> dict:
    """Images/s from JPEG files to features with every core decoding, in threads and in
    processes, and decoding alone; the slower of decoding and inference bounds it."""
    workers, rates, busy = len(os.sched_getaffinity(0)), {}, {}
    for decode in CPU_DECODERS:
        with gpu_tensorrt.GpuSampler() as sampler:
            rates[decode] = _whole_rate(model, paths, device, workers, decode)[0]
        busy[decode] = sampler.summary()
    gpu_decode = _gpu_decode(model, paths, device, workers, busy)
    spec = benchmark.contract_of(model, device, None).input  # decoded to the model's own size
    options = images.LoadOptions(spec.height, spec.width, spec.channels)
    decode = max(_decode_rate(paths, options, workers, kind) for kind in CPU_DECODERS)
    return {"files": len(paths), "batch": min(E2E_BATCH, len(paths)), "decode_threads": workers,
            "end_to_end_images_per_s": rates["threads"],
            "end_to_end_processes_images_per_s": rates["processes"],
            "decode_images_per_s": decode, "arrays_images_per_s": arrays_rate,
            "bound_by": "decode" if decode < arrays_rate else "inference",
            "gpu_utilisation": busy, "gpu_decode": gpu_decode}


def _gpu_decode(model, paths, device, workers, busy) -> dict:
    """`--decode gpu` end to end where nvImageCodec loads: images/s and how the timed files
    were decoded (on the GPU, or fallen back to the CPU and why); else why not."""
    try:
        with gpu_tensorrt.GpuSampler() as sampler:
            rate, decoded = _whole_rate(model, paths, device, workers, "gpu")
    except Exception as exc:  # no nvImageCodec or no CUDA here: say why, keep the other rows
        return {"skipped": f"{type(exc).__name__}: {exc}"[:500]}
    busy["gpu"] = sampler.summary()
    return {"images_per_s": rate, **decoded}


def _whole_rate(model, paths, device, workers, decode) -> tuple[float, dict | None]:
    """Images/s end to end, and for GPU decoding how the timed run's files were decoded."""
    extractor = FeatureExtractor(model, device, workers=workers, decode=decode)
    try:
        batch = min(E2E_BATCH, len(paths))
        extractor.extract(paths[:batch], batch_size=batch)  # warm up (and start processes)
        before, start = extractor.decoded, time.perf_counter()
        extractor.extract(paths, batch_size=batch)
        rate = len(paths) / (time.perf_counter() - start)
        return rate, _since(before, extractor.decoded)
    finally:
        extractor.close()


def _since(before: dict | None, after: dict | None) -> dict | None:
    """The GPU decoder's tally of the timed run alone, the warm-up taken off."""
    if after is None:
        return None
    reasons = {why: n - before["reasons"].get(why, 0) for why, n in after["reasons"].items()}
    return {"gpu": after["gpu"] - before["gpu"],
            "cpu_fallback": after["cpu_fallback"] - before["cpu_fallback"],
            "reasons": {why: n for why, n in reasons.items() if n}}


def name_for(found: dict) -> str:
    gpu = (found.get("gpu") or "no-gpu").split(",")[0].lower().replace("nvidia ", "")
    return f"gpu-{'-'.join(gpu.split())}-ort{found['onnxruntime']}"


def markdown(data) -> str:
    m = data["machine"]
    lines = [f"# GPU suite: {m.get('gpu')}", "",
             f"CUDA {m.get('cuda')}, onnxruntime {m['onnxruntime']}, {m['cpu']} "
             f"({m['cores']} cores), Python {m['python']}. Images/s from host arrays at each "
             "batch (median call; copies to and from the GPU counted).", "",
             "Decoding alone (decode, resize to 224x224, float32), images/s by threads or "
             "processes: " + ", ".join(f"{k}: {v:.0f}" for k, v in data["decode_scaling"].items())
             + ".", ""]
    for entry in data["models"]:
        lines += _model_lines(entry, data["batch_sizes"])
    return "\n".join(lines) + "\n"


def _model_lines(entry, batches) -> list[str]:
    q, e2e = entry["quality"], entry["end_to_end"]
    lines = [f"## {entry['model']}", "",
             f"float32 on the GPU against the CPU on 8 real photos: max rel "
             f"{entry['float32_max_rel_to_cpu']:.2e}.",
             f"FP16 against float32 on {q.get('images')} real photos: min cosine "
             f"{q['min_cosine']:.5f}, max rel {q['max_rel']:.2e}, measured on "
             f"{q.get('measured_on')}.", "",
             "| runtime | " + " | ".join(f"batch {n}" for n in batches) + " |",
             "|---|" + "---:|" * len(batches)]
    for name in dict.fromkeys(row["runtime"] for row in entry["results"]):
        rates = {row["batch"]: row["images_per_s"] for row in entry["results"]
                 if row["runtime"] == name}
        lines.append(f"| {name} | " + " | ".join(f"{rates[n]:.0f}" for n in batches) + " |")
    processes = e2e.get("end_to_end_processes_images_per_s")
    in_processes = f" ({processes:.0f} decoding in as many processes)" if processes else ""
    lines += ["", f"End to end from {e2e['files']} JPEG files (FP16, batch {e2e['batch']}, "
              f"{e2e['decode_threads']} decode threads): {e2e['end_to_end_images_per_s']:.0f} "
              f"images/s{in_processes}; decoding alone at best "
              f"{e2e['decode_images_per_s']:.0f} images/s, inference "
              f"from arrays {e2e['arrays_images_per_s']:.0f}: the slower stage is "
              f"{e2e['bound_by']}."]
    lines += _gpu_decode_lines(e2e.get("gpu_decode"))
    lines += [f"GPU utilisation meanwhile ({decode}): {_busy(u)}."
              for decode, u in e2e.get("gpu_utilisation", {}).items()]
    lines += gpu_tensorrt.markdown_lines(entry.get("tensorrt", {}))
    lines += [f"Not timed: {s['runtime']}: {s['reason']}" for s in entry["skipped"]]
    return lines + [""]


def _gpu_decode_lines(found: dict | None) -> list[str]:
    if not found:
        return []
    if "skipped" in found:
        return [f"With --decode gpu: not timed ({found['skipped']})."]
    why = "; ".join(f"{n} {reason}" for reason, n in found["reasons"].items())
    return [f"With --decode gpu (nvImageCodec, batches kept on the GPU): "
            f"{found['images_per_s']:.0f} images/s; {found['gpu']} files decoded on the GPU, "
            f"{found['cpu_fallback']} on the CPU{f' ({why})' if why else ''}."]


def _busy(summary) -> str:
    if not summary.get("samples"):
        return f"not sampled ({summary.get('error') or 'no samples'})"
    return (f"mean {summary['mean_percent']:.0f}%, max {summary['max_percent']:.0f}% "
            f"({summary['samples']} samples, {summary['source']})")


def write(data, results: Path) -> list[Path]:
    results.mkdir(parents=True, exist_ok=True)
    name = name_for(data["machine"])  # "gpu-h200-ort1.31.1": no with_suffix on its dots
    json_file, md = results / f"{name}.json", results / f"{name}.md"
    atomic.write_bytes(json_file, json.dumps(data, indent=1).encode())
    atomic.write_bytes(md, markdown(data).encode())
    return [json_file, md]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--iters", type=int, default=ITERS)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the suite itself")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--jpegs", type=int, default=JPEGS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        data = run(args.models, args.iters, Path(workdir), args.results, args.device,
                   args.batch_sizes, args.jpegs)
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
