#!/usr/bin/env bash
# Build BVLC Caffe with CUDA into PREFIX, atomically: docker/build_caffe.sh's build, for GPUs.
#
#   docker/build_caffe_cuda.sh PREFIX --toolkit ROOT [--python PY] [--cuda-arch "80 90"] [--jobs N]
#
# ROOT is a CUDA toolkit folder (bin/nvcc, include/, lib64/): the one docker/cuda_toolkit.sh
# assembles from NVIDIA's PyPI wheels, or /usr/local/cuda on an nvidia/cuda image. Caffe gets
# CPU_ONLY=OFF, binaries for each architecture of --cuda-arch and PTX for the last one, cuBLAS,
# cuRAND and NCCL (for `caffe train --gpu all`), no cuDNN (Caffe 1.0 does not compile against
# cuDNN 8 and later), pycaffe against PY.
#
# The source is patched with caffe-debian12.patch, as for the CPU build, then caffe-cuda13.patch
# (CUDA 13's removed APIs and architectures). build_caffe.sh applies the patch file lying next to
# it; it runs here from a scratch folder where that file is the two patches one after the other.
# build_caffe.sh itself stays as it is: its hash is part of the CPU build's cache key
# (tools/bootstrap.sh), and the CPU Caffe must not be rebuilt because a CUDA path was added.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "build_caffe_cuda: error: $*" >&2; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

prefix="" toolkit="" python=python3 cuda_arch="80 90" jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --toolkit) toolkit=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --cuda-arch) cuda_arch=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -*) echo "build_caffe_cuda: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$prefix" ] || usage 2; prefix=$1; shift ;;
  esac
done
[ -n "$prefix" ] && [ -n "$toolkit" ] || usage 2
[ -x "$toolkit/bin/nvcc" ] || die "$toolkit/bin/nvcc not found: --toolkit must be a CUDA toolkit folder (docker/cuda_toolkit.sh makes one)"
[ -d "$toolkit/lib64" ] || die "$toolkit has no lib64/ (FindCUDA looks for libcudart there)"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/caffe-cuda.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp "$here/build_caffe.sh" "$scratch/"
cat "$here/caffe-debian12.patch" "$here/caffe-cuda13.patch" > "$scratch/caffe-debian12.patch"

args=(--cmake-arg -DCUDA_TOOLKIT_ROOT_DIR="$toolkit"
      # The shared runtime, whose library RPATH and ldd show; FindCUDA prefers the static one.
      --cmake-arg -DCUDA_USE_STATIC_CUDA_RUNTIME=OFF
      # One build serves pycaffe here and the carryable bundle (tools/gpu_bundle.sh): without
      # OpenCV (whose codecs pull GDAL, GDCM and 200 MB more; the project's LMDBs hold raw
      # Datums, which Caffe reads without it) and without Python layers (which would link
      # libcaffe.so to this machine's libpython; the project uses none).
      --cmake-arg -DUSE_OPENCV=OFF --cmake-arg -DBUILD_python_layer=OFF)
# NCCL inside the toolkit (the PyPI one); otherwise Caffe's FindNCCL searches /usr (libnccl-dev).
if [ -f "$toolkit/include/nccl.h" ]; then
  args+=(--cmake-arg -DNCCL_INCLUDE_DIR="$toolkit/include" --cmake-arg -DNCCL_LIBRARIES="$toolkit/lib64/libnccl.so")
fi
"$scratch/build_caffe.sh" "$prefix" --python "$python" --cuda-arch "$cuda_arch" --jobs "$jobs" "${args[@]}"
