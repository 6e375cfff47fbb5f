"""The end-to-end suite's report: one table per model, and the issue's goals."""

from __future__ import annotations

# The pipeline against 1 / (decode + engine time per image): what it may cost of its own, for a
# model whose compute dominates (ResNet50).
PIPELINE_VS_SERIAL = 0.9
# A tiny model (ResNet-8): end to end against decoding alone, where decoding is the bound.
PIPELINE_VS_DECODE = 0.8
# Fast against exact decoding, end to end, on large JPEGs. libjpeg still reads every Huffman
# code at full cost, so about 1.8x is the most a CPU gives (measured on 2560x1600 photos).
FAST_VS_EXACT = 1.5


def serial(row) -> float:
    """Images/s of decoding then the engine, one after the other, with no overhead."""
    return 1 / (1 / row["decode_images_per_s"] + 1 / row["engine_images_per_s"])


def ratios(row) -> tuple[float, float, float]:
    """End to end against serial and against decoding alone, and serial against decoding
    alone: what end to end / decoding would be if decoding and the engine took turns on the
    cores (it can be more where they overlap on cores the other leaves idle)."""
    end_to_end, decode = row["pipeline_images_per_s"], row["decode_images_per_s"]
    return end_to_end / serial(row), end_to_end / decode, serial(row) / decode


def markdown(data) -> str:
    m = data["machine"]
    sets = ", ".join(f"{name}: {s['images']} JPEGs of {s['mean_kib']:.0f} KiB on average"
                     for name, s in data["image_sets"].items())
    lines = [f"# fexport extract end to end: {m['cpu']}, {m['cores']} cores", "",
             f"CPU flags: {', '.join(m['cpu_flags']) or 'none of note'}; onnxruntime "
             f"{m['onnxruntime']}, pillow {m.get('pillow', '?')}; load average "
             f"{data['load_before']:.2f} before, {data['load_after']:.2f} after "
             f"({'quiet' if data.get('quiet') else 'NOT quiet'}). Images: {sets} (photos: "
             "the sample photos at 400-640 px; large: re-encoded at 2560x1600). Batch "
             f"{data['batch_size']}; the best of {_passes(data)}.", ""]
    for model in data["models"]:
        lines += _table(model)
    lines += ["## Goals", ""] + [f"- {line}" for line in goals(data)]
    return "\n".join(lines) + "\n"


def _passes(data) -> str:
    if not data.get("min_seconds"):  # results written before passes filled a time
        return f"{data['passes']} passes"
    return f"{data['passes']} passes or as many as fill {data['min_seconds']:g} s"


def _table(model) -> list[str]:
    lines = [f"## {model['model']}", "",
             "| images | decode | decoders | decoding alone | engine alone | end to end | "
             "end to end / serial | end to end / decoding | serial / decoding |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in model["rows"]:
        vs_serial, vs_decode, bound = ratios(row)
        lines.append(f"| {row['images']} | {row['decode_quality']} | {_decoder(row)} | "
                     f"{row['decode_images_per_s']:.1f} | {row['engine_images_per_s']:.1f} | "
                     f"{row['pipeline_images_per_s']:.1f} | {vs_serial:.2f}x | "
                     f"{vs_decode:.2f}x | {bound:.2f}x |")
    return lines + [""]


def _decoder(row) -> str:
    return row.get("decoder", "threads")  # results written before decoders were compared


def goals(data) -> list[str]:
    found = []
    for model in data["models"]:
        rows = {(r["images"], r["decode_quality"], _decoder(r)): r for r in model["rows"]}
        for (images, quality, decoder), row in rows.items():
            vs_serial, vs_decode, bound = ratios(row)
            found.append(f"{model['model']}, {images}, {quality}, {decoder}: end to end "
                         f"{vs_serial:.2f}x serial (goal {PIPELINE_VS_SERIAL}x for ResNet50), "
                         f"{vs_decode:.2f}x decoding alone (goal {PIPELINE_VS_DECODE}x for "
                         f"ResNet-8; taking turns would give {bound:.2f}x)")
        for decoder in sorted({key[2] for key in rows if key[:2] == ("large", "fast")}):
            gain = rows[("large", "fast", decoder)]["pipeline_images_per_s"] / \
                rows[("large", "exact", decoder)]["pipeline_images_per_s"]
            found.append(f"{model['model']}, large, {decoder}: fast {gain:.2f}x exact end to "
                         f"end (goal {FAST_VS_EXACT}x)")
    return found
