#!/usr/bin/env bash
# The CUDA check (issue #16) on a lent GPU machine, from the repository root:
#
#   here:  python -m fexport.bench.gpu_carry .gpu       # packs onnxruntime-gpu and the models
#   there: bash bench/gpu_check.sh unpack               # call 1, carrying .gpu/ort-part1.tar.xz
#   there: bash bench/gpu_check.sh                      # call 2, carrying .gpu/ort-part2.tar.xz,
#                                                       #   .gpu/nvimgcodec.tar.xz and .gpu/models
#   there: bash bench/gpu_check.sh suite                # call 2 for the timing suite alone
# The machine has the CUDA 13 libraries (PyTorch's nvidia-* wheels) but no onnxruntime-gpu, no
# TensorFlow and no package index; each step below is bounded so one failure leaves the rest.
# TensorRT (--device tensorrt, the suite's TensorRT FP16 and INT8 rows) runs only where its
# libraries are there: they are hundreds of MB and cannot be carried, so the tensorrt step says why
# not, and the suite lists TensorRT under "Not timed" with the reason.
# --decode gpu (nvImageCodec; the suite's end-to-end "--decode gpu" rows) runs where
# nvidia.nvimgcodec imports: gpu_carry packs it with nvJPEG in .gpu/nvimgcodec.tar.xz (10.5 MB,
# carried with part2), unpacked into .gpu/nvimgcodec; else the gpu-decode step and the suite
# say why not.
# Everything it prints, and the suite's results, land in $OUT.
set -u
ROOT=$(pwd)
OUT=${OUT:-/tmp/fexport-gpu-out}
SITE=$ROOT/.gpu/site
mkdir -p "$OUT" "$SITE"

unpack() {
  for part in .gpu/ort-part1.tar.xz .gpu/ort-part2.tar.xz; do
    if [ -f "$part" ] && [ ! -f "$part.done" ]; then
      python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], \
filter='tar')" "$part" "$SITE" && touch "$part.done" && echo "unpacked $part"
    fi
  done
  if [ -f .gpu/nvimgcodec.tar.xz ] && [ ! -f .gpu/nvimgcodec.tar.xz.done ]; then  # gpu_carry's
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], \
filter='tar')" .gpu/nvimgcodec.tar.xz "$ROOT/.gpu/nvimgcodec" && \
      touch .gpu/nvimgcodec.tar.xz.done && echo "unpacked .gpu/nvimgcodec.tar.xz"
  fi
  ls -la "$SITE/onnxruntime/capi" 2>&1 | tail -8
}

machine() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv || true
  nproc; python3 --version; uptime
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" || true
  python3 -c "import tensorrt" 2>&1 | tail -1
}

step() {  # step SECONDS NAME COMMAND...: one bounded step, its status said either way
  local limit=$1 name=$2
  shift 2
  echo "=== $name"
  timeout "$limit" "$@"
  echo "=== $name: exit $?"
}

if [ "${1:-}" = "unpack" ]; then
  unpack
  machine
  exit 0
fi

unpack
NVIDIA=$(python3 -c "import nvidia, os; print(list(nvidia.__path__)[0])")
export LD_LIBRARY_PATH=$(find "$NVIDIA" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)
if [ -d "$ROOT/.gpu/nvimgcodec/nvidia/cu13/lib" ]; then  # nvJPEG's wheel, carried beside it
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$ROOT/.gpu/nvimgcodec/nvidia/cu13/lib
fi
step 120 install python3 -m pip install -q --no-index --no-deps --upgrade --target "$ROOT/.gpu/fexport" \
  .gpu/wheel/fexport-*.whl  # built here: pip wheel --no-deps -w .gpu/wheel .
# PYTHONSAFEPATH: the repository's own fexport/ folder must not shadow the installed package
export PYTHONPATH=$SITE:$ROOT/.gpu/fexport:$ROOT/.gpu/nvimgcodec FEXPORT_GPU_MODELS=$ROOT/.gpu/models PYTHONSAFEPATH=1
export PYTHONUNBUFFERED=1
# TensorRT's engines, kept between calls on a warm machine (the suite times its own empty cache).
export FEXPORT_CACHE_DIR=$ROOT/.gpu/cache
machine
if [ "${1:-}" = "suite" ]; then  # the suite alone, on the models carried
  step 60 fill python3 -m fexport.bench.gpu_carry --fill .gpu/models
  step 420 suite python3 -m fexport.bench.gpu .gpu/models --results "$OUT"
  exit 0
fi
step 60 providers python3 -c "import onnxruntime as o; print(o.__version__, o.__file__, \
o.get_available_providers())"
step 60 doctor python3 -m fexport doctor
step 60 tensorrt python3 -c "from fexport.runtime import backends; \
print(backends.tensorrt_unavailable() or 'TensorRT provider and libnvinfer.so.10 load')"
step 60 gpu-decode python3 -c "from fexport.runtime import doctor; \
print(doctor.gpu_decode())"
step 60 fill python3 -m fexport.bench.gpu_carry --fill .gpu/models
step 240 tests python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py
step 90 extract bash -c "python3 -c 'import sys, pathlib; from fexport.bench import suite; \
suite.make_image_folder(pathlib.Path(sys.argv[1]), 64)' /tmp/photos && python3 -m fexport \
extract .gpu/models/vww.onnx /tmp/photos --device cuda -o $OUT/vww-features.npy && python3 -c 'import numpy, sys; print(numpy.load(sys.argv[1]).shape)' $OUT/vww-features.npy"
step 420 suite python3 -m fexport.bench.gpu .gpu/models --results "$OUT"
