#!/usr/bin/env bash
# The CUDA build of Caffe on a real GPU, in one go; prints speed-ups over the CPU (`make gpu-check`).
#
#   tools/gpu_check.sh [--iterations N]        (default 500 training iterations)
#
# On a machine with an NVIDIA GPU and driver (CUDA 13: release 580 or later):
#   1. builds the CUDA Caffe, or reuses it (tools/caffe_cuda.sh; 1.4 GB of wheels from PyPI);
#   2. nvidia-smi and `caffe device_query --gpu 0`;
#   3. the same forward pass on CPU and GPU must agree (pycaffe, the fetal deploy net);
#   4. `caffe time` of the fetal deploy net (prototxt/fetal_channels) on CPU and on GPU 0;
#   5. tools/train.py on the tutorial CNN, on CPU and with --gpu 0 (MNIST LMDBs made if missing);
#   6. `caffe train --gpu all` of the same solver: NCCL across every visible GPU (a single GPU
#      runs without NCCL; two or more exercise it);
#   7. tests/test_cuda_build.py.
# Everything it writes goes to runs/gpu_check/ (summary.txt holds the numbers for the README).
# Exits non-zero at the first step that fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py="$root/.venv/bin/python" out="$root/runs/gpu_check" iterations=500
die() { echo "gpu_check: error: $*" >&2; exit 1; }
step() { printf '\n=== %s\n' "$*" >&2; }
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --iterations) iterations=$2; shift 2 ;;
    *) echo "gpu_check: unknown option $1" >&2; usage 2 ;;
  esac
done

step "1. the CUDA build"
prefix=$(tools/caffe_cuda.sh)
export FETAL_CAFFE_PREFIX=$prefix PYTHONPATH=$root GLOG_logtostderr=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
caffe="$prefix/bin/caffe"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
say() { echo "gpu_check: $*" | tee -a "$summary" >&2; }

step "2. GPU and driver"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver on this machine"
nvidia-smi -L | tee -a "$summary"
say "driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1); Caffe $prefix"
gpus=$(nvidia-smi -L | grep -c '^GPU ')
"$caffe" device_query --gpu 0 2>&1 | tee "$out/device_query.log" | grep -E 'Name|Major|Minor|Total global' >&2 \
  || die "caffe device_query --gpu 0 failed (see $out/device_query.log)"

step "3. CPU and GPU agree on a forward pass"
"$py" - <<'EOF' | tee -a "$summary" >&2
import numpy as np
from fetal_biometry import caffe_env
from fetal_biometry.nets import checks
deploy = "prototxt/fetal_channels/deploy.prototxt"
outputs = {}
for mode in ("cpu", "gpu"):
    caffe_env.set_device(None if mode == "cpu" else 0)
    net = checks.net(deploy)
    for i, (name, blobs) in enumerate(net.params.items()):
        for j, blob in enumerate(blobs):
            blob.data[...] = np.random.default_rng(10 * i + j).normal(0, 0.1, blob.data.shape)
    data = np.random.default_rng(99).random(net.blobs["data"].data.shape, dtype=np.float32)
    outputs[mode] = next(iter(net.forward(data=data).values())).copy()
worst = float(np.abs(outputs["cpu"] - outputs["gpu"]).max())
print(f"gpu_check: forward pass CPU vs GPU: max |difference| {worst:.2e}")
assert worst < 1e-4, f"CPU and GPU disagree by {worst}"
EOF

step "4. caffe time, fetal deploy net"
forward_ms() {  # caffe time's "Average Forward pass: X ms"
  "$caffe" time --model=prototxt/fetal_channels/deploy.prototxt --iterations=50 "$@" 2>&1 \
    | tee -a "$out/caffe_time.log" | sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p'
}
cpu_ms=$(forward_ms); gpu_ms=$(forward_ms --gpu=0)
[ -n "$cpu_ms" ] && [ -n "$gpu_ms" ] || die "caffe time failed (see $out/caffe_time.log)"
say "caffe time fetal_channels deploy: CPU $cpu_ms ms, GPU $gpu_ms ms per forward pass: $(awk "BEGIN{printf \"%.1f\", $cpu_ms/$gpu_ms}")x"

step "5. tools/train.py, tutorial CNN, $iterations iterations"
"$py" -c 'from fetal_biometry.experiments import demo; demo.mnist_lmdbs()'
train_s() {  # wall seconds of one training run
  local start=$SECONDS
  "$py" tools/train.py prototxt/tutorial_cnn/solver.prototxt --out "$out/train_$1" --max-iter "$iterations" \
    --no-progress "${@:2}" > "$out/train_$1.log" 2>&1 || die "training on $1 failed (see $out/train_$1.log)"
  echo $((SECONDS - start))
}
rm -rf "$out/train_cpu" "$out/train_gpu"
cpu_s=$(train_s cpu); gpu_s=$(train_s gpu --gpu 0)
say "tools/train.py tutorial CNN, $iterations iterations: CPU $cpu_s s, GPU $gpu_s s: $(awk "BEGIN{printf \"%.1f\", $cpu_s/($gpu_s>0?$gpu_s:1)}")x"

step "6. caffe train --gpu all ($gpus GPU(s); NCCL with 2 or more)"
solver="$out/solver_all.prototxt"
sed -e "s/^max_iter: .*/max_iter: $iterations/" -e "s#^snapshot_prefix: .*#snapshot_prefix: \"$out/all/net\"#" \
  prototxt/tutorial_cnn/solver.prototxt > "$solver"
mkdir -p "$out/all"
start=$SECONDS
"$caffe" train --solver="$solver" --gpu=all > "$out/train_all.log" 2>&1 || die "caffe train --gpu all failed (see $out/train_all.log)"
grep -q "Optimization Done" "$out/train_all.log" || die "caffe train --gpu all did not finish (see $out/train_all.log)"
say "caffe train --gpu all on $gpus GPU(s), $iterations iterations: $((SECONDS - start)) s"

step "7. tests/test_cuda_build.py"
"$py" -m pytest -q tests/test_cuda_build.py | tail -3 | tee -a "$summary" >&2
echo; cat "$summary"
