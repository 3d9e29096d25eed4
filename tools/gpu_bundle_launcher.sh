#!/usr/bin/env bash
# caffe from the fetal-biometry GPU bundle (tools/gpu_bundle.sh puts this file in it as `caffe`).
#
#   ./caffe COMMAND [caffe flags]   run Caffe (./caffe help: its commands), e.g.
#                                   ./caffe device_query --gpu 0; ./caffe time --model=NET --gpu 0
#   ./caffe --bundle-info           what was found where, and `ldd` of the binary and libcaffe
#
# Caffe links CUDA 13's cudart, cuBLAS, cuRAND and NCCL, which the bundle leaves to the machine.
# They are looked for, in order, in: $FETAL_CUDA_LIB (folders, colon-separated); $CUDA_HOME (or
# $CUDA_PATH)/lib64 and /lib; site-packages/nvidia/*/lib of every Python on PATH, of $VIRTUAL_ENV
# and $CONDA_PREFIX, and of the usual system, conda and user locations (where PyTorch's and JAX's
# CUDA wheels put them: nvidia-cuda-runtime, nvidia-cublas, nvidia-curand, nvidia-nccl-cu13);
# /usr/local/cuda*; fetal-biometry's toolkit cache (~/.cache/fetal-biometry/cuda-toolkit-*).
# The folders found go first on LD_LIBRARY_PATH; one line on stderr says which. A library that
# is nowhere is an error naming it, what to install, and where it looked. The NVIDIA driver
# (libcuda.so.1) comes from the system as usual; without it Caffe runs on the CPU only.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
say() { echo "caffe (fetal-biometry GPU bundle): $*" >&2; }
field() { sed -n "s/^$1: //p" "$here/MANIFEST"; }

# glibc is the one library the bundle takes from the machine besides CUDA: old enough?
need_glibc=$(field glibc)
have_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}') || have_glibc=""
if [ -n "$have_glibc" ] && [ "$(printf '%s\n%s\n' "$need_glibc" "$have_glibc" | sort -V | head -1)" != "$need_glibc" ]; then
  say "error: this machine's glibc is $have_glibc; the bundle needs $need_glibc or later (Debian 12, Ubuntu 22.04, RHEL 9 and later have it)"
  exit 1
fi
# Debian 12's C++ runtime where glibc is new enough for it, else the machine's (which must then
# be GCC 12's or later: the dynamic linker names a missing GLIBCXX_ version otherwise).
cxx_glibc=$(field 'glibc for lib\/cxx')
cxx_line="the machine's C++ runtime"
if [ -n "$have_glibc" ] && [ "$(printf '%s\n%s\n' "$cxx_glibc" "$have_glibc" | sort -V | head -1)" = "$cxx_glibc" ]; then
  cxx_dir="$here/lib/cxx" cxx_line="the bundle's C++ runtime"
fi

candidates=()
IFS=: read -r -a explicit <<< "${FETAL_CUDA_LIB:-}"
candidates+=(${explicit[@]+"${explicit[@]}"})
for home in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
  [ -n "$home" ] && candidates+=("$home/lib64" "$home/lib")
done
sites=()
for py in python3 python; do
  command -v "$py" >/dev/null || continue
  while read -r site; do sites+=("$site"); done < <("$py" -c \
    'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
done
shopt -s nullglob
for base in "${VIRTUAL_ENV:-/nonexistent}" "${CONDA_PREFIX:-/nonexistent}" /usr/local /usr /opt/conda \
            /opt/venv "${HOME:-/nonexistent}/.local"; do
  sites+=("$base"/lib/python3*/site-packages "$base"/lib/python3*/dist-packages)
done
for site in ${sites[@]+"${sites[@]}"}; do
  candidates+=("$site"/nvidia/*/lib)
done
candidates+=(/usr/local/cuda/lib64 /usr/local/cuda-13*/lib64
             "${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}"/fetal-biometry/cuda-toolkit-*/nvidia/cu13/lib)
shopt -u nullglob

found=() missing=()
for lib in $(field cuda); do
  dir=""
  for candidate in ${candidates[@]+"${candidates[@]}"}; do
    if [ -e "$candidate/$lib" ]; then dir=$(cd "$candidate" && pwd); break; fi
  done
  if [ -z "$dir" ]; then missing+=("$lib"); continue; fi
  case " ${found[*]-} " in *" $dir "*) ;; *) found+=("$dir") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
  say "error: CUDA 13 libraries not found: ${missing[*]}. Install them into any Python on this machine:"
  say "  pip install nvidia-cuda-runtime==13.* nvidia-cublas==13.* nvidia-curand==10.* nvidia-nccl-cu13"
  say "or set CUDA_HOME to a CUDA 13 toolkit, or FETAL_CUDA_LIB to the folders holding them."
  looked=$(for c in ${candidates[@]+"${candidates[@]}"}; do if [ -d "$c" ]; then echo "$c"; fi; done | sort -u | tr '\n' ' ')
  say "Looked in: ${looked:-no such folder here (no site-packages/nvidia/*/lib in any Python, no CUDA_HOME, no /usr/local/cuda)}"
  exit 1
fi
path=$(IFS=:; echo "${found[*]}")
export LD_LIBRARY_PATH="${cxx_dir:+$cxx_dir:}$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

driver=$( { ldconfig -p 2>/dev/null || true; } | awk '/libcuda\.so\.1 /{print $NF; exit}')
driver_line=${driver:+NVIDIA driver library $driver}
say "CUDA libraries from ${found[*]}; ${driver_line:-no NVIDIA driver library (libcuda.so.1): CPU only}; $cxx_line"

if [ "${1:-}" = "--bundle-info" ]; then
  cat "$here/MANIFEST"
  echo "glibc here: ${have_glibc:-unknown}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$here/bin/caffe" "$here/lib/libcaffe.so"
  exit 0
fi
exec "$here/bin/caffe" "$@"
