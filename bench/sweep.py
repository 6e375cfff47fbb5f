"""Coverage sweep: export every registered backbone with each head and verify it against Keras.

    python -m fexport.bench.sweep                      # all 40 models x (avg, flatten)
    python -m fexport.bench.sweep --models VGG16,ResNet50 --heads avg

Each export runs in a fresh process (a converter that runs out of memory takes only its own row
down) with `--weights none` at the registry's recommended layer and default tolerances. Rows
are appended to bench/results/sweep.json as they finish, so an interrupted sweep resumes where
it stopped; bench/results/sweep.md is rewritten from it after every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fexport import models
from fexport.runtime.files import atomic
from fexport.runtime.timing import machine, peak_rss_mib

RESULTS = Path(__file__).resolve().parent / "results"
HEADS = ("avg", "flatten")
TIMEOUT_S = 1800  # NASNetLarge's flatten export is the slowest: about 5 minutes here


def export_row(name, head, workdir) -> dict:
    """Export one model with one head in this process; the sweep's row."""
    from fexport.errors import VerificationError
    from fexport.exporter import ExportOptions, export

    output = Path(workdir) / f"{name}_{head}.onnx"
    start = time.perf_counter()
    try:
        result = export(ExportOptions(source=name, head=head, weights="none",
                                      output=str(output)))
        row = {"layer": result.contract.layers[0], "feature_dim": result.contract.feature_dim}
        report = result.report
    except VerificationError as exc:  # keep the numbers: they say how far off it is
        row, report = {"error": str(exc)[:300]}, exc.report
    row.update({"model": name, "head": head, "export_s": round(time.perf_counter() - start, 1),
                "max_abs": report.max_abs, "max_rel": report.max_rel,
                "min_cosine": report.min_cosine, "passed": report.passed,
                "onnx_mib": round(output.stat().st_size / 2**20, 1),
                "peak_rss_gib": round(peak_rss_mib() / 1024, 1)})
    return row


def run_isolated(name, head) -> dict:
    """export_row in a child process; a failure becomes a row with the error's last line."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "fexport.bench.sweep", "--one", name, head, workdir]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return _failed(name, head, f"timed out after {TIMEOUT_S} s")
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        return _failed(name, head, lines[-1][:300])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _failed(name, head, error) -> dict:
    return {"model": name, "head": head, "passed": False, "error": error}


def sweep(names, heads, results_file) -> list[dict]:
    data = _read(results_file)
    done = {(r["model"], r["head"]) for r in data["rows"] if r.get("passed")}
    for name in names:
        for head in heads:
            if (name, head) in done:
                continue
            row = run_isolated(name, head)
            data["rows"] = [r for r in data["rows"] if (r["model"], r["head"]) != (name, head)]
            data["rows"].append(row)
            _write(results_file, data)
            yield row


def _read(results_file) -> dict:
    if Path(results_file).exists():
        return json.loads(Path(results_file).read_text())
    return {"machine": {}, "rows": []}


def _write(results_file, data) -> None:
    data["machine"] = {**machine(), **_conversion_versions()}
    data["rows"].sort(key=lambda r: (_order(r["model"]), r["head"]))
    atomic.write_bytes(results_file, json.dumps(data, indent=1).encode())
    atomic.write_bytes(Path(results_file).with_suffix(".md"), markdown(data).encode())


def _order(name) -> int:
    names = models.names()
    return names.index(name) if name in names else len(names)


def _conversion_versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("tensorflow", "keras", "tf2onnx", "onnx")}


def markdown(data) -> str:
    rows = data["rows"]
    passed = sum(1 for r in rows if r.get("passed"))
    lines = [f"# Coverage sweep: {passed} of {len(rows)} exports pass", "",
             _machine_line(data["machine"]), "",
             "Reproduce: `python -m fexport.bench.sweep` (weights none, recommended layer, "
             "default tolerances).", "",
             "| model | layer | head | features | export s | max abs | max rel | min cosine "
             "| ONNX MiB | peak RSS GiB | result |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [_markdown_row(r) for r in rows]
    return "\n".join(lines) + "\n"


def _machine_line(m) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in ("tensorflow", "keras", "tf2onnx", "onnx",
                                                  "onnxruntime") if k in m)
    return f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; {versions}."


def _markdown_row(r) -> str:
    if "max_rel" not in r:
        return f"| {r['model']} | | {r['head']} | | | | | | | | FAIL: {r['error']} |"
    return (f"| {r['model']} | {r.get('layer', '')} | {r['head']} | {r.get('feature_dim', '')} | "
            f"{r['export_s']} | {r['max_abs']:.2g} | {r['max_rel']:.2g} | "
            f"{r['min_cosine']:.7f} | {r['onnx_mib']} | {r['peak_rss_gib']} | "
            f"{'pass' if r['passed'] else 'FAIL: ' + r.get('error', '')} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated registry names (default: all)")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--results", default=str(RESULTS / "sweep.json"))
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "HEAD", "WORKDIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(export_row(*args.one)))
        return 0
    names = [models.get(n).name for n in args.models.split(",")] if args.models \
        else models.names()
    failures = 0
    for row in sweep(names, args.heads.split(","), args.results):
        failures += not row.get("passed")
        print(_markdown_row(row), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
