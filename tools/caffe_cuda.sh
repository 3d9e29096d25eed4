#!/usr/bin/env bash
# The CUDA build of Caffe in the project's cache, built once per machine; prints its prefix.
#
#   tools/caffe_cuda.sh [--cuda-arch "80 90"] [--jobs N]    build what is missing (`make caffe-cuda`)
#   tools/caffe_cuda.sh --print                             print the prefix only, build nothing
#
# 1. The CUDA toolkit from NVIDIA's PyPI wheels (docker/cuda_toolkit.sh) in
#    ${FETAL_CACHE:-~/.cache/fetal-biometry}/cuda-toolkit-<key>, key = that script (its pins).
# 2. Caffe for those GPU architectures (default sm_80 + sm_90, PTX for sm_90) built by
#    docker/build_caffe_cuda.sh against the toolkit and the project's virtual environment, in
#    .../caffe-<key>-cuda; key = Caffe's source version, both patches, the build scripts, the
#    toolkit, the architectures, the Python ABI and numpy's major version.
# Both are staged aside and renamed into place: an interrupted build leaves nothing half-made.
# No GPU is needed to build. Use the result with FETAL_CAFFE_PREFIX=$(tools/caffe_cuda.sh --print).
# Cold: about 30 s of pip (1.4 GB) and 28 CPU-minutes of compiling (about 15 minutes on 2 idle
# cores; 80 on a shared, overloaded one); cached: under a second.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FETAL_VENV:-$root/.venv}
cache=${FETAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fetal-biometry}
docker="$root/docker"

die() { echo "caffe_cuda: error: $*" >&2; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

print_only=0 cuda_arch="80 90" jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --print) print_only=1; shift ;;
    --cuda-arch) cuda_arch=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "caffe_cuda: unknown option $1" >&2; usage 2 ;;
  esac
done
[ -x "$venv/bin/python" ] || die "no virtual environment at $venv: run tools/bootstrap.sh (or make test) first"

toolkit_dir="$cache/cuda-toolkit-$(sha256sum < "$docker/cuda_toolkit.sh" | cut -c1-16)"
key=$( { grep -E '^CAFFE_(DEB_VERSION|GIT_COMMIT)=' "$docker/build_caffe.sh"
         cat "$docker/caffe-debian12.patch" "$docker/caffe-cuda13.patch" \
             "$docker/build_caffe.sh" "$docker/build_caffe_cuda.sh" | sha256sum
         echo "${toolkit_dir##*/} $cuda_arch"
         "$venv/bin/python" -c 'import sysconfig, numpy; print(sysconfig.get_config_var("SOABI"), numpy.__version__.split(".")[0])'
       } | sha256sum | cut -c1-16)
prefix="$cache/caffe-$key-cuda"
if [ "$print_only" = 1 ] || [ -x "$prefix/bin/caffe" ]; then
  echo "$prefix"; exit 0
fi
# One build at a time per cache (two test runs at once): the second waits, then finds it built.
mkdir -p "$cache"
exec 9> "$cache/caffe-cuda.lock"
flock 9
if [ -x "$prefix/bin/caffe" ]; then echo "$prefix"; exit 0; fi

start=$SECONDS
toolkit=$("$docker/cuda_toolkit.sh" "$toolkit_dir" --python "$venv/bin/python")
echo "caffe_cuda: toolkit ready in $((SECONDS - start)) s: $toolkit" >&2
echo "caffe_cuda: building Caffe for sm ${cuda_arch} into $prefix (once per machine; about 15 minutes on 2 idle cores)" >&2
"$docker/build_caffe_cuda.sh" "$prefix" --toolkit "$toolkit" --python "$venv/bin/python" \
  --cuda-arch "$cuda_arch" --jobs "$jobs"
echo "caffe_cuda: built in $((SECONDS - start)) s" >&2
echo "$prefix"
