#!/usr/bin/env bash
# Entry point of the fetal-biometry images: runs one project command against the mounted folders.
#
#   docker run [--gpus all] -v DATA:/data -v OUT:/out IMAGE COMMAND [ARGS...]
#
# COMMAND is the name of any tools/NAME.py (simulate, make_lmdb, train, infer, evaluate, demo,
# make_prototxt, ...; `help` lists them), `caffe` (or another of Caffe's binaries: convert_imageset,
# compute_image_mean, ...), or `bash`. It runs in /app, the repository, where data/ is /data and
# runs/ is /out, so the checked-in prototxt find their LMDBs and write their snapshots there.
# With --gpu (or Caffe's -gpu) it first checks that a GPU is visible and that Caffe was built
# with CUDA, and says what to do if not, instead of letting Caffe abort.
set -euo pipefail

die() { echo "fetal-biometry: error: $*" >&2; exit 2; }

tools() { for f in /app/tools/*.py; do n=${f##*/}; echo "  ${n%.py}"; done; }
usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  echo; echo "commands here:"
  if [ -x /opt/venv/bin/python ]; then tools; else echo "  (legacy image: Caffe's binaries only)"; fi
  echo "  caffe"
}

wants_gpu() {
  local arg
  for arg in "$@"; do
    case "$arg" in --gpu|--gpu=*|-gpu|-gpu=*) return 0 ;; esac
  done
  return 1
}

check_gpu() {
  local lib
  lib=$(ls /opt/caffe/lib/libcaffe.so* 2>/dev/null | head -1)
  [ -n "$lib" ] && grep -q libcudart "$lib" \
    || die "--gpu given, but this is the CPU image (Caffe built CPU_ONLY). Drop --gpu, or use the GPU image."
  if ! ls /dev/nvidia[0-9]* >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
    die "--gpu given, but no GPU is visible in this container (no /dev/nvidia*). Start it with
  docker run --gpus all ...            (NVIDIA Container Toolkit)
  podman run --device nvidia.com/gpu=all ...   (CDI)
or drop --gpu to train on the CPU."
  fi
}

check_out() {
  # Everything is written under /out (HOME and caches too); fail now rather than mid-training.
  [ -d /out ] && [ -w /out ] && return
  die "/out is missing or not writable by uid $(id -u). Mount a writable output folder:
  docker run -v \"\$PWD/out:/out\" --user \"\$(id -u):\$(id -g)\" ..."
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  help|-h|--help) usage; exit 0 ;;
  bash|sh) exec "$cmd" "$@" ;;
esac

wants_gpu "$@" && check_gpu
check_out
cd /app
if [ -x "/opt/caffe/bin/$cmd" ]; then
  exec "/opt/caffe/bin/$cmd" "$@"
elif [ -f "/app/tools/$cmd.py" ]; then
  [ -x /opt/venv/bin/python ] || die "'$cmd' needs the Python package; this legacy image has Caffe's binaries only (use the GPU or CPU image)"
  exec /opt/venv/bin/python "/app/tools/$cmd.py" "$@"
fi
echo "fetal-biometry: error: unknown command '$cmd'" >&2
usage >&2
exit 2
