"""Writing a suite's results: only from a quiet machine, as JSON and Markdown, atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from fexport.runtime.files import atomic

# The development guide's quiet machine: another job shows as a load of 1.0 or more.
MAX_LOAD = 0.3
# The one-minute load average falls by a factor e a minute once the machine is idle, so two
# minutes take a finished test run's 1.0 under 0.3; waiting here saves a run that would be
# refused at its end.
SETTLE_SECONDS = 120


def settled_load(max_wait: float = SETTLE_SECONDS, poll: float = 5.0) -> float:
    """The one-minute load average, once it is at most MAX_LOAD or `max_wait` seconds have
    passed, whichever comes first."""
    deadline = time.monotonic() + max_wait
    while (load := os.getloadavg()[0]) > MAX_LOAD and time.monotonic() < deadline:
        time.sleep(poll)
    return load


def refusal(data: dict, allow_load: bool) -> str | None:
    """Why `data` is not a result (the machine was busy before the run), or None; marks it
    quiet or not either way, so that a smoke run written with `allow_load` says so."""
    data["quiet"] = data["load_before"] <= MAX_LOAD
    if data["quiet"] or allow_load:
        return None
    return (f"not written: load average {data['load_before']:.2f} before the run (over "
            f"{MAX_LOAD}); rerun on a quiet machine, or pass --allow-load")


def write(data: dict, stem: Path, markdown: str) -> list[Path]:
    """stem.json and stem.md, each written whole or not at all."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_file, md = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    atomic.write_bytes(json_file, json.dumps(data, indent=1).encode())
    atomic.write_bytes(md, markdown.encode())
    return [json_file, md]


def main(description, run, markdown, stem_of, iters, argv=None) -> int:
    """A suite's command line: `--iters`, `--allow-load`; run, refuse numbers taken under load,
    write the results to `stem_of(machine)` (.json and .md) and print the markdown's path."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--iters", type=int, default=iters)
    parser.add_argument("--allow-load", action="store_true")
    args = parser.parse_args(argv)
    data = run(args.iters)
    if message := refusal(data, args.allow_load):
        print(message, file=sys.stderr)
        return 1
    print(write(data, stem_of(data["machine"]), markdown(data))[-1])
    return 0


def result_stem(suite_name: str, machine: dict) -> str:
    """A results file's stem: the suite, the CPU, its cores and onnxruntime's version."""
    cpu = "-".join(machine["cpu"].split()[:2]).lower()
    return f"{suite_name}-{cpu}-{machine['cores']}cores-ort{machine['onnxruntime']}"
