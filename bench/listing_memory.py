"""The Ray driver's memory for a large input list: held as a list (how `--engine ray` listed
before files/listing.py) against spooled to Parquet and read back in blocks (how it lists now),
each in a fresh interpreter, peak resident memory above the same interpreter with the same
imports and no list.

    python -m fexport.bench.listing_memory [--counts 200000 1000000 3000000]

The names are synthetic, 45 characters each (/data/images/shard-0042/img-0001234567.jpg); what
Ray itself holds (the blocks in its object store, which spills to disk) is not the driver's.
Writes bench/results/listing-memory.json and .md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from fexport.runtime import timing

from . import publish

RESULTS = Path(__file__).resolve().parent / "results"
WAYS = ("list", "spooled")
# One child per way: the same imports, then the listing, then its peak resident memory.
CHILD = r"""
import json, os, sys
import pyarrow, pyarrow.parquet
from fexport.runtime.files import listing
way, count, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = (f"/data/images/shard-{i // 10000:04d}/img-{i:010d}.jpg" for i in range(count))
if way == "list":  # the keys, and the rows from_items was given
    keys = list(names)
    rows = [{"index": i, "path": k, "file": os.fsencode(k)} for i, k in enumerate(keys)]
    digest = json.dumps(keys)
elif way == "spooled":  # spooled, then read back a block at a time, as _dataset does
    spooled = listing.spool(names, os.path.join(folder, "inputs.parquet"))
    blocks = sum(1 for t in spooled.tables() for s in range(0, t.num_rows, 4096))
# VmHWM, not ru_maxrss: a child keeps its parent's ru_maxrss across exec (a test worker's GBs).
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmHWM:")))
"""


def peak(way: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", CHILD, way, str(count), folder],
                             check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def run(counts) -> dict:
    rows = [{"count": n, "baseline": peak("none", n), **{way: peak(way, n) for way in WAYS}}
            for n in counts]
    return {"machine": timing.machine(), "rows": rows}


def markdown(data) -> str:
    m = data["machine"]
    lines = ["# The Ray driver's memory for its input list", "",
             f"{m['cpu']}, Python {m['python']}: extra peak resident memory over an "
             "interpreter with the same imports and no list.", "",
             "| names | held as a list (before) | spooled, read back in blocks (now) |",
             "|---:|---:|---:|"]
    lines += [f"| {r['count']:,} | " + " | ".join(
        f"{(r[way] - r['baseline']) / 2**20:.0f} MiB" for way in WAYS) + " |"
        for r in data["rows"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[200_000, 1_000_000, 3_000_000])
    data = run(parser.parse_args(argv).counts)
    publish.write(data, RESULTS / "listing-memory", markdown(data))
    sys.stdout.write(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
