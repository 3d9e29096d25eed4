#!/usr/bin/env bash
# Assemble a CUDA toolkit folder from NVIDIA's PyPI wheels: no system CUDA, no other downloads.
#
#   docker/cuda_toolkit.sh DIR [--python PY]     install into DIR (once), print the toolkit root
#   docker/cuda_toolkit.sh --pins                print the pinned wheels (part of cache keys)
#
# pip installs the wheels below (--no-deps, exact versions) into a staging folder; they share
# one tree, nvidia/cu13/ (bin/nvcc, cudafe++, ptxas, fatbinary, cuobjdump; include/ with CCCL;
# lib/; nvvm/ with cicc and libdevice), and NCCL lands beside it in nvidia/nccl/. Then the links
# CMake's FindCUDA and Caffe's FindNCCL look for are added to that tree: lib64 -> lib, the
# unversioned .so names the linker wants (libcudart.so, libcublas.so, ...), and NCCL's header and
# library inside the toolkit's include/ and lib/, so one folder is the whole toolkit and one
# RPATH entry finds every library. The staging folder is renamed to DIR only once nvcc runs:
# a failed install never leaves a half-made DIR. The root printed is DIR/nvidia/cu13, the
# folder to give CMake as CUDA_TOOLKIT_ROOT_DIR (docker/build_caffe_cuda.sh --toolkit).
# About 1.4 GB on disk; pip takes a minute.
set -euo pipefail

# CUDA 13.5's compiler (nvcc, its front end cicc/NVVM, the C runtime headers) and runtime,
# cuBLAS 13, cuRAND 10, NCCL 2 built for CUDA 13, CCCL (thrust, cub), and cuobjdump for checking
# which architectures the fatbinaries hold. NVIDIA publishes cuobjdump 13.5 later than the rest.
PINS=(
  nvidia-cuda-nvcc==13.5.37
  nvidia-nvvm==13.5.37
  nvidia-cuda-crt==13.5.37
  nvidia-cuda-runtime==13.5.37
  nvidia-cuda-cccl==13.3.5.0.6
  nvidia-cublas==13.10.0.20
  nvidia-curand==10.4.4.72
  nvidia-nccl-cu13==2.32.3
  nvidia-cuda-cuobjdump==13.4.92
)

die() { echo "cuda_toolkit: error: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

dir="" python=python3
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --pins) printf '%s\n' "${PINS[@]}"; exit 0 ;;
    --python) python=$2; shift 2 ;;
    -*) echo "cuda_toolkit: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$dir" ] || usage 2; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage 2
dir=$(realpath -m "$dir")
root="$dir/nvidia/cu13"

if [ -e "$dir" ]; then
  [ -x "$root/bin/nvcc" ] || die "$dir exists but holds no nvidia/cu13/bin/nvcc; remove it to reinstall"
  echo "$root"; exit 0
fi
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (apt-get install python3-pip, or --python a venv's python)"

mkdir -p "$(dirname "$dir")"
stage=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$stage"' EXIT
echo "cuda_toolkit: installing ${#PINS[@]} NVIDIA wheels into $dir (about 1.4 GB, a minute)" >&2
"$python" -m pip install -q --no-deps --no-compile --only-binary=:all: --target "$stage" "${PINS[@]}" \
  > "$stage.log" 2>&1 || { grep -v 'is ignored' "$stage.log" | tail -20 >&2; rm -f "$stage.log"; \
  die "pip could not install the CUDA wheels (no route to PyPI? see above)"; }
rm -f "$stage.log"

cu="$stage/nvidia/cu13" nccl="$stage/nvidia/nccl"
[ -x "$cu/bin/nvcc" ] && [ -f "$nccl/include/nccl.h" ] || die "the wheels did not install nvidia/cu13/bin/nvcc and nvidia/nccl: has their layout changed?"
ln -s lib "$cu/lib64"
# Unversioned names: what `-lcudart` and FindCUDA's find_library look for (the wheels ship only
# the versioned runtime names, as a driver-side install would).
for lib in "$cu"/lib/lib*.so.*; do
  ln -s "${lib##*/}" "${lib%.so.*}.so"
done
ln -s ../../nccl/include/nccl.h "$cu/include/nccl.h"
ln -s ../../nccl/lib/libnccl.so.2 "$cu/lib/libnccl.so.2"
ln -s libnccl.so.2 "$cu/lib/libnccl.so"
"$cu/bin/nvcc" --version >/dev/null || die "the installed nvcc does not run"
mv -T "$stage" "$dir"
trap - EXIT
echo "$root"
