"""The suite's results as Markdown: tables, then each target with its measured ratio and verdict."""

from __future__ import annotations

KERAS_PREDICT, KERAS_CALL, ORT = "keras.predict", "keras.__call__", "onnxruntime"
INT8 = "onnxruntime int8"


def row(run, runtime, batch) -> dict | None:
    return next((r for r in run["results"] if r["runtime"] == runtime and r["batch"] == batch),
                None)


def speedup(run, other, batch) -> float | None:
    """How many times ONNX Runtime's median latency beats `other`'s at `batch`."""
    ours, theirs = row(run, ORT, batch), row(run, other, batch)
    return theirs["p50_ms"] / ours["p50_ms"] if ours and theirs else None


def matmul_fraction(entry, r, data) -> float:
    return entry["gflops_per_image"] * r["images_per_s"] / data["matmul_gflops"]["best"]


def markdown(data) -> str:
    m, mm = data["machine"], data["matmul_gflops"]
    lines = [f"# fexport benchmark: {m['cpu']}, {m['cores']} cores"
             f"{', ' + m['gpu'] if m.get('gpu') else ''}", "",
             f"onnxruntime {m['onnxruntime']}, keras {m.get('keras')}, tensorflow "
             f"{m.get('tensorflow')}, numpy {m.get('numpy')}. FP32 limit (best measured "
             f"{mm['size']}x{mm['size']} matmul): numpy {mm['numpy']:.0f}, onnxruntime "
             f"{mm['onnxruntime']:.0f} GFLOP/s.", "",
             "Reproduce: `python -m fexport.bench.suite` (random weights, interleaved runs).",
             ""]
    for section in (_latency, _int8, _folder, _cold, _targets):
        lines += section(data) + [""]
    return "\n".join(lines)


def _latency(data) -> list[str]:
    out = ["## Latency and throughput", "",
           "| model | device | batch | runtime | p50 ms | p90 ms | p99 ms | images/s | "
           "GFLOP/s | of matmul | onnxruntime faster by |", "|---|---|---:|---|" + "---:|" * 7]
    for entry in data["models"]:
        for run in entry["runs"]:
            device = device_of(run)
            for r in run["results"]:
                if r["runtime"] in (ORT, KERAS_PREDICT, KERAS_CALL):
                    out.append(_latency_row(entry, run, r, device, data))
    return out


def _latency_row(entry, run, r, device, data) -> str:
    ratio = speedup(run, r["runtime"], r["batch"]) if r["runtime"] != ORT else None
    rate = entry["gflops_per_image"] * r["images_per_s"]
    return (f"| {entry['model']} {entry['head']} | {device} | {r['batch']} | {r['runtime']} | "
            f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['images_per_s']:.1f} | {rate:.0f} | {matmul_fraction(entry, r, data):.0%} | "
            f"{f'{ratio:.2f}x' if ratio else ''} |")


def _int8(data) -> list[str]:
    out = ["## INT8 against float32 (same run; quality on 32 images not used to calibrate)", "",
           "| model | batch | float32 images/s | int8 images/s | int8 speedup | min cosine | "
           "mean cosine | nearest-5 overlap |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in data["models"]:
        quality, run = entry.get("int8_quality"), cpu_run(entry)
        for batch in sorted({r["batch"] for r in run["results"]}) if quality else []:
            fp32, int8 = row(run, ORT, batch), row(run, INT8, batch)
            out.append(f"| {entry['model']} | {batch} | {fp32['images_per_s']:.1f} | "
                       f"{int8['images_per_s']:.1f} | "
                       f"{int8['images_per_s'] / fp32['images_per_s']:.2f}x | "
                       f"{quality['min_cosine']:.4f} | {quality['mean_cosine']:.4f} | "
                       f"{quality['neighbour_overlap']:.0%} |")
    return out


def device_of(run) -> str:
    return "cuda" if "CUDA" in run["provider"] else "cpu"


def cpu_run(entry):
    return next((r for r in entry["runs"] if device_of(r) == "cpu"), None)


def _folder(data) -> list[str]:
    out = ["## Folder extraction (JPEG decode + resize + inference) against inference alone", "",
           "| model | device | batch | inference images/s | end to end images/s | fraction | "
           "decode + resize alone images/s |", "|---|---|---:|---:|---:|---:|---:|"]
    for entry in data["models"]:
        for run in entry["runs"]:
            device = device_of(run)
            for batch in sorted({r["batch"] for r in run["results"]}):
                ort, e2e = row(run, ORT, batch), row(run, "end-to-end", batch)
                decode = row(run, "decode+resize", batch)
                if ort and e2e and decode:
                    out.append(f"| {entry['model']} | {device} | {batch} | "
                               f"{ort['images_per_s']:.1f} | {e2e['images_per_s']:.1f} | "
                               f"{e2e['images_per_s'] / ort['images_per_s']:.0%} | "
                               f"{decode['images_per_s']:.0f} |")
    return out


def _cold(data) -> list[str]:
    out = ["## Cold start (fresh process: import, load, one image) and its peak memory", "",
           "| model | onnxruntime s | keras s | faster by | onnxruntime MiB | keras MiB | "
           "memory ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for entry in data["models"]:
        c = entry["cold_start"]
        o, k = c["onnxruntime"], c["keras"]
        out.append(f"| {entry['model']} | {o['seconds']:.2f} | {k['seconds']:.2f} | "
                   f"{k['seconds'] / o['seconds']:.1f}x | {o['peak_rss_mib']:.0f} | "
                   f"{k['peak_rss_mib']:.0f} | {o['peak_rss_mib'] / k['peak_rss_mib']:.2f} |")
    return out


def _targets(data) -> list[str]:
    out = ["## Targets (CPU)", "", "| target | model | measured | met |", "|---|---|---:|---|"]
    for label, model, value, goal, unit in targets(data):
        met = "yes" if value is not None and value >= goal else "**no**"
        shown = "n/a" if value is None else f"{value:.2f}{unit}"
        out.append(f"| {label} (goal {goal:g}{unit}) | {model} | {shown} | {met} |")
    return out


def targets(data):
    """(label, model, measured, goal, unit) for each target of issue #5 the run can judge."""
    for entry in data["models"]:
        run = cpu_run(entry)
        if run is None:
            continue
        name = entry["model"]
        if name in ("VGG16", "ResNet50"):
            yield ("batch-1 latency vs Keras predict", name, speedup(run, KERAS_PREDICT, 1), 2.5,
                   "x")
            yield ("batch-1 latency vs Keras direct call", name, speedup(run, KERAS_CALL, 1), 1.5,
                   "x")
        goal = 1.25 if name == "VGG16" else 2.0
        yield "batch-8 throughput vs Keras predict", name, speedup(run, KERAS_PREDICT, 8), goal, "x"
        ort8 = row(run, ORT, 8)
        if name == "VGG16" and ort8:
            yield "batch-8 share of the matmul limit", name, matmul_fraction(entry, ort8, data), \
                0.95, ""
        yield from _folder_and_cold(entry, run)
        yield from _int8_targets(entry, run)


def _int8_targets(entry, run):
    fp32, int8, quality = row(run, ORT, 8), row(run, INT8, 8), entry.get("int8_quality")
    if fp32 and int8 and quality:
        yield ("INT8 batch-8 throughput vs float32", entry["model"],
               int8["images_per_s"] / fp32["images_per_s"], 3.0, "x")
        yield "INT8 min cosine to float32", entry["model"], quality["min_cosine"], 0.99, ""


def _folder_and_cold(entry, run):
    ort, e2e = row(run, ORT, 32), row(run, "end-to-end", 32)
    if ort and e2e:
        yield ("folder extraction share of inference, batch 32", entry["model"],
               e2e["images_per_s"] / ort["images_per_s"], 0.85, "")
    cold = entry.get("cold_start")
    if cold:
        o, k = cold["onnxruntime"], cold["keras"]
        yield "cold start vs Keras", entry["model"], k["seconds"] / o["seconds"], 5.0, "x"
        yield ("peak memory, Keras / onnxruntime", entry["model"],
               k["peak_rss_mib"] / o["peak_rss_mib"], 3.0, "x")
