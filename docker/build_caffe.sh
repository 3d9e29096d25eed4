#!/usr/bin/env bash
# Build BVLC Caffe from source and install it under PREFIX, atomically.
#
# One script for the local install (tools/bootstrap.sh) and the Docker images.
#
#   docker/build_caffe.sh PREFIX [--python PY] [--cuda-arch "80 90"] [--jobs N]
#                         [--no-patch] [--cmake-arg -DNAME=VALUE ...]
#
# Source, in order of preference:
#   1. $CAFFE_SRC: an unpacked Caffe tree you already have;
#   2. Debian's source package caffe 1.0.0+git20180821.99bd997 (= BVLC master 9b89154), fetched
#      with `apt-get source` through a temporary deb-src list (the machine's sources are untouched);
#   3. BVLC's git repository at that commit.
# The tree is patched with docker/caffe-debian12.patch (protobuf 3.21, OpenCV 4), configured with
# CMake (CPU_ONLY unless --cuda-arch is given, OpenBLAS, OpenCV, LMDB, pycaffe against PY and its
# numpy) and installed into a staging folder that is renamed to PREFIX only once everything worked:
# a failed build never leaves a half-installed PREFIX.
# --no-patch skips the patch (older systems, e.g. Ubuntu 16.04's protobuf 2.6 / OpenCV 2.4, need
# the original code); each --cmake-arg is passed to CMake after the defaults, so it overrides them
# (the Dockerfile's legacy target: -DUSE_CUDNN=ON -DUSE_NCCL=OFF -DBUILD_python=OFF).
set -euo pipefail

CAFFE_DEB_VERSION=1.0.0+git20180821.99bd997
CAFFE_GIT_COMMIT=9b89154
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "build_caffe: error: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

prefix="" python=python3 cuda_arch="" jobs=$(nproc) apply_patch=1 extra_cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --python) python=$2; shift 2 ;;
    --cuda-arch) cuda_arch=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --no-patch) apply_patch=0; shift ;;
    --cmake-arg) extra_cmake_args+=("$2"); shift 2 ;;
    -*) echo "build_caffe: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$prefix" ] || usage 2; prefix=$1; shift ;;
  esac
done
[ -n "$prefix" ] || usage 2
prefix=$(realpath -m "$prefix")
[ ! -e "$prefix" ] || die "$prefix already exists; remove it to rebuild"
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
"$python" -c 'import numpy' 2>/dev/null || die "$python cannot import numpy; install numpy first"

work=$(mktemp -d "${TMPDIR:-/tmp}/caffe-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

fetch_source() {
  if [ -n "${CAFFE_SRC:-}" ]; then
    cp -a "$CAFFE_SRC" "$work/src"; return
  fi
  local lists="$work/apt-lists" opts
  mkdir -p "$lists/partial"
  echo "deb-src http://deb.debian.org/debian bullseye main" > "$work/src.list"
  opts=(-o Dir::Etc::SourceList="$work/src.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$lists" -o APT::Sandbox::User=root -qq)
  if command -v apt-get >/dev/null && apt-get "${opts[@]}" update >/dev/null 2>&1 \
     && (cd "$work" && apt-get "${opts[@]}" source --download-only "caffe=$CAFFE_DEB_VERSION-8" >/dev/null 2>&1); then
    mkdir "$work/src"
    tar xzf "$work"/caffe_"$CAFFE_DEB_VERSION".orig.tar.gz -C "$work/src"
    return
  fi
  echo "build_caffe: Debian source package not reachable, trying BVLC's git repository" >&2
  git clone -q https://github.com/BVLC/caffe.git "$work/src" \
    && git -C "$work/src" checkout -q "$CAFFE_GIT_COMMIT" \
    || die "could not fetch Caffe's source (no Debian source package, no GitHub). Download it yourself and set CAFFE_SRC=/path/to/caffe"
}

echo "build_caffe: fetching source" >&2
fetch_source
if [ "$apply_patch" = 1 ]; then
  patch -d "$work/src" -p1 -s < "$here/caffe-debian12.patch" || die "patch did not apply to the Caffe source"
fi

pylib=$("$python" -c 'import sysconfig as s, os; print(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("LDLIBRARY")))')
pyinc=$("$python" -c 'import sysconfig as s; print(s.get_paths()["include"])')
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
npinc=$("$python" -c 'import numpy; print(numpy.get_include())')
# Without these CMake finds Debian's own libpython and headers instead of PY's (a virtual
# environment's interpreter is often not the system one).
cmake_args=(
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
  -DBLAS=Open -DUSE_OPENCV=ON -DUSE_LMDB=ON -DUSE_LEVELDB=OFF
  -DBUILD_python=ON -DBUILD_python_layer=ON -DBUILD_docs=OFF -DBUILD_matlab=OFF
  -Dpython_version=3 -DBoost_PYTHON_VERSION="$pyver"
  -DPYTHON_EXECUTABLE="$("$python" -c 'import sys; print(sys.executable)')"
  -DPYTHON_LIBRARY="$pylib" -DPYTHON_INCLUDE_DIR="$pyinc" -DNUMPY_INCLUDE_DIR="$npinc"
)
if [ -n "$cuda_arch" ]; then
  # BVLC's arch list stops at Pascal; name the cards' architectures (e.g. "80 90") directly.
  # cuDNN stays off: Caffe 1.0 does not compile against cuDNN 8 and later.
  cmake_args+=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DCUDA_ARCH_NAME=Manual
               -DCUDA_ARCH_BIN="$cuda_arch" -DCUDA_ARCH_PTX="${cuda_arch##* }" -DUSE_NCCL=ON)
else
  cmake_args+=(-DCPU_ONLY=ON)
fi
cmake_args+=(${extra_cmake_args[@]+"${extra_cmake_args[@]}"})

echo "build_caffe: configuring ($([ -n "$cuda_arch" ] && echo "CUDA sm $cuda_arch" || echo CPU_ONLY))" >&2
mkdir "$work/build"
# From inside the build folder, not `cmake -S -B`: CMake before 3.13 (Ubuntu 16.04) lacks those.
(cd "$work/build" && cmake "$work/src" "${cmake_args[@]}") > "$work/cmake.log" 2>&1 \
  || { tail -40 "$work/cmake.log" >&2; die "CMake configuration failed (missing -dev packages? see above)"; }

echo "build_caffe: compiling with $jobs jobs (several minutes)" >&2
make -C "$work/build" -j"$jobs" \
  > "$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; die "compilation failed (see above)"; }
# DESTDIR keeps the final PREFIX in the RPATHs while installing into a staging folder.
make -C "$work/build" install DESTDIR="$work/stage" > "$work/install.log" 2>&1 \
  || { tail -20 "$work/install.log" >&2; die "make install failed"; }
mkdir -p "$(dirname "$prefix")"
mv "$work/stage$prefix" "$prefix.tmp.$$" && mv -T "$prefix.tmp.$$" "$prefix"
echo "build_caffe: installed into $prefix" >&2
