"""The serving suite's report: one table per model, and the issue's two goals at 32 clients."""

from __future__ import annotations

GOAL_CLIENTS = 32
# Served throughput with batching, against in-process extract at batch 32, for a model whose
# compute dominates (ResNet50): what HTTP, decoding in the server and batching may cost.
SERVED_VS_IN_PROCESS = 0.8
# Batching on against off for a small model, where the cost per call weighs most. For pixel
# requests the server's HTTP work is the same batched or not, so batching saves engine calls
# only, and in-process extract at batch 32 against batch 1 bounds the gain: the report gives it.
BATCHING_GAIN = 2.0


def markdown(data) -> str:
    m = data["machine"]
    lines = [f"# fexport serve: {m['cpu']}, {m['cores']} cores",
             "",
             f"CPU flags: {', '.join(m['cpu_flags']) or 'none of note'}; onnxruntime "
             f"{m['onnxruntime']}; load average {data['load_before']:.2f} before, "
             f"{data['load_after']:.2f} after ({'quiet' if data.get('quiet') else 'NOT quiet'})."
             f" Each cell: {data['seconds']:g} s of closed-loop clients on keep-alive "
             "connections, one image a request (binary v2), after 1 s of warm-up. Clients "
             "run on the same cores as the server.", ""]
    for model in data["models"]:
        lines += _model_table(model)
    lines += ["## Goals at 32 clients", ""] + [f"- {line}" for line in goals(data)]
    return "\n".join(lines) + "\n"


def _model_table(model) -> list[str]:
    local = {(r["inputs"], r["batch_size"]): r["images_per_s"] for r in model["in_process"]}
    lines = [f"## {model['model']}", "",
             "In-process `extract` (same inputs, decoding included): " + ", ".join(
                 f"{inputs} batch {batch} {speed:.1f} images/s"
                 for (inputs, batch), speed in local.items()), "",
             "| inputs | batching | clients | images/s | p50 ms | p99 ms | mean batch | "
             "x in-process |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in model["served"]:
        base = local[(row["inputs"], 32 if row["batching"] == "on" else 1)]
        lines.append(f"| {row['inputs']} | {row['batching']} | {row['clients']} | "
                     f"{row['images_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                     f"{row['mean_batch']:.2f} | {row['images_per_s'] / base:.2f}x |")
    return lines + [""]


def goals(data) -> list[str]:
    found = []
    for model in data["models"]:
        served = {(r["inputs"], r["batching"]): r["images_per_s"] for r in model["served"]
                  if r["clients"] == GOAL_CLIENTS}
        local = {(r["inputs"], r["batch_size"]): r["images_per_s"] for r in model["in_process"]}
        for inputs in ("jpeg", "pixels"):
            vs_local = served[(inputs, "on")] / local[(inputs, 32)]
            gain = served[(inputs, "on")] / served[(inputs, "off")]
            ceiling = local[(inputs, 32)] / local[(inputs, 1)]
            found.append(f"{model['model']}, {inputs}: served {vs_local:.2f}x in-process "
                         f"batch 32 (goal {SERVED_VS_IN_PROCESS}x for ResNet50); batching on "
                         f"{gain:.2f}x off (goal {BATCHING_GAIN}x for the small model; "
                         f"in-process, batch 32 ran {ceiling:.2f}x batch 1)")
    return found
