"""Ray's scale-out, measured on one machine: a local multi-node cluster (a head and a second
raylet started with `ray start`, one CPU each), the same extraction on 1 and on 2 nodes, beside
the local engine on one thread, in one run.

    python -m fexport.bench.ray_scale [--iters 3] [--allow-load]

The model is the committed ResNet-8 (tests/data), exported here; the images are the photos of
the scikit-image wheel, copied under new names up to 2000. Each row's rate is the best of
`--iters` runs (a cluster's first run pays for worker start-up: it is timed apart, as `first`).
On a real cluster the same command with `--address` runs one worker per node.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fexport.runtime import extract_to_file, timing

from . import publish

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = Path(__file__).resolve().parents[1] / "tests" / "data" / \
    "mlcommons_tiny_cifar10_pretrainedResnet.h5"
BATCH = 16


def run(iters: int, count: int = 2000) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fexport-ray-scale-"))
    try:
        model, images = _model(work), _images(work / "images", count)
        data = {"machine": timing.machine(), "load_before": publish.settled_load(),
                "images": count, "batch_size": BATCH, "iters": iters, "rows": []}
        data["rows"].append(_timed("local engine, 1 thread", iters, lambda n: extract_to_file(
            model, images, work / f"local{n}.npy", threads=1, batch_size=BATCH)))
        for nodes in (1, 2):
            with _cluster(nodes) as address:
                data["rows"].append(_timed(f"ray, {nodes} node{'s' * (nodes > 1)}", iters,
                                           lambda n: extract_to_file(
                    model, images, work / f"ray{nodes}-{n}.parquet", engine="ray",
                    address=address, num_workers=nodes, threads=1, batch_size=BATCH)))
        return _with_ratios(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _model(work: Path) -> str:
    import fexport

    path = work / "resnet8.onnx"
    fexport.export(str(MODEL), layer="activation_6", head="avg", output=path)
    return str(path)


def _images(folder: Path, count: int) -> str:
    import skimage

    photos = sorted(p for p in (Path(skimage.__file__).parent / "data").iterdir()
                    if p.suffix.lower() in (".png", ".jpg"))
    folder.mkdir(parents=True)
    for i in range(count):
        source = photos[i % len(photos)]
        shutil.copy(source, folder / f"{i:05d}{source.suffix}")
    return str(folder)


def _timed(name, iters, call) -> dict:
    started = time.perf_counter()
    call(0)
    first = time.perf_counter() - started
    best = min(_seconds(call, n) for n in range(1, iters + 1))
    return {"run": name, "first_s": round(first, 2), "best_s": round(best, 2)}


def _seconds(call, n) -> float:
    started = time.perf_counter()
    call(n)
    return time.perf_counter() - started


def _with_ratios(data: dict) -> dict:
    count, rows = data["images"], data["rows"]
    for row in rows:
        row["images_per_s"] = round(count / row["best_s"], 1)
    local, one, two = (row["images_per_s"] for row in rows)
    data["speedup_2_nodes_over_1"] = round(two / one, 2)
    data["ray_1_node_over_local"] = round(one / local, 2)  # the cost of Ray on one node
    return data


class _cluster:
    """A head and `nodes - 1` more raylets on this machine, one CPU each; stopped on exit."""

    def __init__(self, nodes: int):
        self.nodes = nodes

    def __enter__(self) -> str:
        # Ray 2.60's `ray start` turns on token authentication, which this process (started
        # before the token existed) would then lack: off for a cluster that lives on this
        # machine for one run. A real cluster keeps it, and its nodes share the token.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        # Ray turns 127.0.0.1 into this machine's own address, where the raylets listen.
        _ray("start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false")
        for _ in range(self.nodes - 1):
            _ray("start", f"--address={self.address}", "--num-cpus=1")
        return self.address

    def __exit__(self, *exc) -> None:
        _ray("stop", "--force")


def _ray(*args) -> None:
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    subprocess.run([str(ray), *args], check=True, env=env, capture_output=True, timeout=180)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def markdown(data: dict) -> str:
    machine = data["machine"]
    lines = [f"# Ray scale-out on one machine: {data['images']} photos, ResNet-8, batch "
             f"{data['batch_size']}", "",
             f"{machine['cpu']}, {machine['cores']} cores ({', '.join(machine['cpu_flags'])}), "
             f"load before {data['load_before']:.2f}; best of {data['iters']} runs.", "",
             "| run | first run s | best s | images/s |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['first_s']} | {r['best_s']} | {r['images_per_s']} |"
              for r in data["rows"]]
    lines += ["", f"2 nodes over 1: {data['speedup_2_nodes_over_1']}x; Ray on one node against "
                  f"the local engine: {data['ray_1_node_over_local']}x.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    return publish.main(__doc__.splitlines()[0], run, markdown,
                        lambda machine: RESULTS / publish.result_stem("ray-scale", machine),
                        iters=3, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
