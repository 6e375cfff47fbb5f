"""A PNG bar chart of the suite's throughput, drawn with Pillow (already a dependency)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from .report import INT8, KERAS_CALL, KERAS_PREDICT, ORT, cpu_run, row

COLORS = {ORT: (31, 119, 180), INT8: (148, 103, 189), KERAS_PREDICT: (255, 127, 14),
          KERAS_CALL: (44, 160, 44)}
WIDTH, HEIGHT, MARGIN = 900, 420, 50


def save(data, path, batch=8) -> None:
    """images/s at `batch` per model, one bar per runtime, on the CPU run."""
    groups = [(e["model"], _rates(e, batch)) for e in data["models"]]
    top = max((v for _, rates in groups for v in rates.values()), default=1.0) or 1.0
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 10), f"images/s at batch {batch} (higher is better), "
                            f"{data['machine']['cpu']}, {data['machine']['cores']} cores",
              fill="black")
    slot = (WIDTH - 2 * MARGIN) / max(len(groups), 1)
    for i, (model, rates) in enumerate(groups):
        _group(draw, MARGIN + i * slot, slot, model, rates, top)
    _legend(draw)
    image.save(path)


def _rates(entry, batch) -> dict:
    run = cpu_run(entry) or entry["runs"][0]
    found = {name: row(run, name, batch) for name in COLORS}
    return {name: r["images_per_s"] for name, r in found.items() if r}


def _group(draw, left, slot, model, rates, top) -> None:
    bar = slot / (len(COLORS) + 1)
    floor = HEIGHT - MARGIN
    for j, (name, value) in enumerate(rates.items()):
        x = left + bar * (j + 0.5)
        y = floor - (floor - 2 * MARGIN) * value / top
        draw.rectangle([x, y, x + bar * 0.9, floor], fill=COLORS[name])
        draw.text((x, y - 12), f"{value:.1f}", fill="black")
    draw.text((left + bar * 0.5, floor + 8), model, fill="black")


def _legend(draw) -> None:
    for i, (name, color) in enumerate(COLORS.items()):
        x = WIDTH - MARGIN - 160
        y = MARGIN - 15 + 16 * i
        draw.rectangle([x, y, x + 10, y + 10], fill=color)
        draw.text((x + 16, y - 1), name, fill="black")
