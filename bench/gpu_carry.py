"""What a lent GPU machine needs that it does not have, packed to travel (bench/gpu_check.sh).

    python -m fexport.bench.gpu_carry .gpu          # here, on the development machine
    python -m fexport.bench.gpu_carry --fill DIR    # there: random weights back into the skeletons

The GPU machine has no package index and takes at most 64 MiB a call. onnxruntime-gpu's wheel is
256 MB: its CUDA provider holds every kernel compiled for six GPU generations (sm_75 to sm_120,
no PTX). Only the target's entries are kept; the others are zeroed in place, which keeps every
offset in the library valid and compresses to nothing, and the CUDA driver only reads the entry
for the GPU it runs on. The provider alone then packs to 52 MB (xz): one call carries it
(part1), the next the rest (part2), with nvImageCodec and nvJPEG for `--decode gpu`
(nvimgcodec.tar.xz) and the models.

The models: VGG16 and ResNet50 export here (TensorFlow is not there) with random weights, which
travel as skeletons (the large weight tensors emptied, 1 MB) and are filled there with seeded
random values. Random weights are fine for throughput; the quality of FP16 is also judged there
on real photos, on the real VWW MobileNet, which travels whole.
"""

from __future__ import annotations

import argparse
import io
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ORT_GPU = "onnxruntime-gpu==1.31.1"  # built for CUDA 13 and cuDNN 9, as the GPU image has
PYTHON = "3.12"  # the GPU image's python3
# The gpu-decode extra's wheels for CUDA 13.0 (the GPU image's driver 580): 25 MB and 3.7 MB.
GPU_DECODE = ("nvidia-nvimgcodec-cu13==0.9.0.20", "nvidia-nvjpeg==13.0.2.28")
PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
HOPPER = 90  # the H100 and H200: compute capability 9.0
SKELETON_MIN = 1024  # tensors smaller than this travel as they are (biases, BN statistics)
EXPORTS = (("vgg16", ["vgg16", "--weights", "none", "--layer", "block5_pool", "--head",
                      "flatten"]),
           ("resnet50", ["resnet50", "--weights", "none", "--head", "avg"]))
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def keep_one_arch(library: bytes, arch: int = HOPPER) -> tuple[bytes, int]:
    """`library` with every fatbin entry for another GPU architecture zeroed; bytes kept."""
    data, kept, pos = bytearray(library), 0, 0
    while (start := data.find(FATBIN_MAGIC, pos)) >= 0:
        version, header, size = struct.unpack_from("<HHQ", data, start + 4)
        if (version, header) != (1, 16):  # the magic inside other bytes
            pos = start + 4
            continue
        kept += _zero_entries(data, start + header, start + header + size, arch)
        pos = start + header + size
    return bytes(data), kept


def _zero_entries(data: bytearray, entry: int, end: int, arch: int) -> int:
    kept = 0
    while entry < end:
        _, _, header, size = struct.unpack_from("<HHIQ", data, entry)
        (entry_arch,) = struct.unpack_from("<I", data, entry + 28)
        payload = slice(entry + header, entry + header + size)
        if entry_arch == arch:
            kept += size
        else:
            data[payload] = bytes(size)
        entry += header + size
    return kept


def download_wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", PYTHON, "--implementation", "cp", "--platform",
                    "manylinux_2_28_x86_64", "-d", str(folder), ORT_GPU], check=True)
    return next(folder.glob("onnxruntime_gpu-*.whl"))


def pack_runtime(wheel: Path, out: Path) -> None:
    """part1: the CUDA provider for one architecture; part2: the rest of the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        provider, kept = keep_one_arch(archive.read(PROVIDER))
        _write_tar(out / "ort-part1.tar.xz", {PROVIDER: provider})
        _write_tar(out / "ort-part2.tar.xz",
                   {n: archive.read(n) for n in names if n != PROVIDER and not n.endswith("/")})
    print(f"{PROVIDER}: kept {kept / 1e6:.1f} MB of sm_{HOPPER} kernels")


def pack_gpu_decode(cache: Path, out: Path) -> None:
    """nvimgcodec.tar.xz: nvImageCodec and nvJPEG (the gpu-decode extra) unpacked, for
    `--decode gpu` there (bench/gpu_check.sh puts them in .gpu/nvimgcodec)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache),
                    *GPU_DECODE], check=True)
    files = {}
    for pattern in ("nvidia_nvimgcodec_cu13-*.whl", "nvidia_nvjpeg-*.whl"):
        with zipfile.ZipFile(next(cache.glob(pattern))) as archive:
            files.update({n: archive.read(n) for n in archive.namelist()
                          if not n.endswith("/") and ".dist-info/" not in n})
    _write_tar(out / "nvimgcodec.tar.xz", files)


def _write_tar(path: Path, files: dict) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
    # xz, since the GPU machine has no zstd and its Python (3.12) reads xz on its own
    with open(path, "wb") as out:
        subprocess.run(["xz", "-9", "-T0", "-c"], input=buffer.getvalue(), stdout=out,
                       check=True)


def export_models(out: Path, work: Path) -> None:
    """Skeletons of the random-weight backbones, and the real VWW MobileNet whole."""
    work.mkdir(parents=True, exist_ok=True)
    for name, args in EXPORTS:
        full = work / f"{name}.onnx"
        if not full.exists():
            _fexport(*args, "-o", full)
        strip_weights(full, out / f"{name}.skeleton.onnx")
    _fexport(str(DATA / "mlcommons_tiny_vww_96.h5"), "--layer", "activation_26", "--head",
             "avg", "--preprocess", "tf", "-o", out / "vww.onnx", "--overwrite")


def _fexport(*args) -> None:
    subprocess.run([sys.executable, "-m", "fexport", *map(str, args)], check=True)


def strip_weights(source: Path, skeleton: Path, min_size: int = SKELETON_MIN) -> None:
    import onnx

    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if _is_weight(tensor, min_size):
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
            tensor.doc_string = "fexport-gpu-carry: random"
    onnx.save(model, str(skeleton))


def _is_weight(tensor, min_size) -> bool:
    return tensor.data_type == 1 and len(tensor.dims) >= 2 and \
        int(np.prod(tensor.dims)) >= min_size


def fill_weights(skeleton: Path, model_path: Path, seed: int = 0) -> None:
    """LeCun-scaled normal weights (std sqrt(1 / fan-in)). A trained network's batch norms keep
    its activations near unit scale; random weights have none (Keras initialises them to the
    identity), and He scaling let ResNet50's residual sums grow past float16's 65504 (NaN
    features on an H200). LeCun scaling halves the variance through each ReLU, so the sums
    stay in range and FP16 is judged on values of a realistic size."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(skeleton))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        if tensor.doc_string == "fexport-gpu-carry: random":
            dims = tuple(tensor.dims)
            fan_in = int(np.prod(dims[1:])) if len(dims) == 4 else dims[0]
            values = rng.standard_normal(dims, np.float32) * np.float32(np.sqrt(1 / fan_in))
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(model, str(model_path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--fill", action="store_true",
                        help="fill FOLDER's *.skeleton.onnx into *.onnx (on the GPU machine)")
    args = parser.parse_args(argv)
    if args.fill:
        for skeleton in sorted(args.folder.glob("*.skeleton.onnx")):
            fill_weights(skeleton, skeleton.with_name(skeleton.name.replace(".skeleton", "")))
        return 0
    args.folder.mkdir(parents=True, exist_ok=True)
    pack_runtime(download_wheel(args.folder / "cache"), args.folder)
    pack_gpu_decode(args.folder / "cache", args.folder)
    (args.folder / "models").mkdir(exist_ok=True)
    export_models(args.folder / "models", args.folder / "cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
