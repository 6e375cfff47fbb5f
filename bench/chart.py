"""A PNG bar chart of the suite's throughput, drawn with matplotlib (fexport[bench])."""

from __future__ import annotations

from fexport.extras import require

from .report import INT8, KERAS_CALL, KERAS_PREDICT, ORT, cpu_run, row

COLORS = {ORT: "#1f77b4", INT8: "#9467bd", KERAS_PREDICT: "#ff7f0e", KERAS_CALL: "#2ca02c"}
SIZE_PX, DPI = (900, 420), 100


def save(data, path, batch=8) -> None:
    """images/s at `batch` per model, one bar per runtime, on the CPU run."""
    matplotlib = require("matplotlib", "the bench suite's chart")
    matplotlib.use("Agg")  # files only: no display, whatever the environment says
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    try:
        _bars(axes, [(e["model"], _rates(e, batch)) for e in data["models"]])
        axes.set_title(f"images/s at batch {batch} (higher is better), "
                       f"{data['machine']['cpu']}, {data['machine']['cores']} cores", fontsize=9)
        figure.tight_layout()  # within the fixed size: the PNG stays SIZE_PX
        figure.savefig(path, format="png", dpi=DPI)
    finally:
        pyplot.close(figure)


def _rates(entry, batch) -> dict:
    run = cpu_run(entry) or entry["runs"][0]
    found = {name: row(run, name, batch) for name in COLORS}
    return {name: r["images_per_s"] for name, r in found.items() if r}


def _bars(axes, groups) -> None:
    """One group of bars per model, each runtime in its colour at the same slot in every
    group, its value on top; runtimes a model lacks leave their slot empty."""
    width = 1 / (len(COLORS) + 1)
    for slot, (name, color) in enumerate(COLORS.items()):
        placed = [(i + (slot - (len(COLORS) - 1) / 2) * width, rates[name])
                  for i, (_, rates) in enumerate(groups) if name in rates]
        if placed:
            bars = axes.bar(*zip(*placed), width * 0.9, color=color, label=name)
            axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(range(len(groups)), [model for model, _ in groups])
    axes.set_ylabel("images/s")
    axes.margins(y=0.15)  # room for the value labels above the tallest bar
    axes.legend(fontsize=8)
