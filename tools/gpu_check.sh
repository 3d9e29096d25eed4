#!/usr/bin/env bash
# The CUDA Caffe on a real GPU, from the GPU bundle alone: no pycaffe, no toolkit, no build
# (`make gpu-check` here; on a GPU machine, this repository's prototxt/ and tools/ beside the
# bundle and the small LMDBs).
#
#   tools/gpu_check.sh [--bundle FILE|DIR] [--data DIR] [--out DIR] [--iterations N]
#                      [--cpu-only [--cpu-caffe BIN]]
#
#   --bundle      the tarball of tools/gpu_bundle.sh, or its unpacked fetal-caffe-gpu/ folder
#                 (default: tools/gpu_bundle.sh --print, this machine's bundle)
#   --data        the small LMDBs of tools/gpu_check_data.py (default data/gpu_check)
#   --out         where everything goes (default runs/gpu_check; summary.txt holds the numbers)
#   --iterations  training iterations per run, the same on CPU and GPU (default 200)
#   --cpu-only    the CPU half only, for a machine without a GPU (checks the script and the
#                 bundle; device_query must then be the one-sentence refusal)
#   --cpu-caffe   with --cpu-only: the caffe that trains and tests (default the bundle's). Where
#                 no NVIDIA driver is loaded the CUDA Caffe cannot train even on the CPU: its
#                 data-prefetch thread asks the driver for the current device and aborts; give
#                 the project's CPU build (.venv's Caffe prefix, bin/caffe) there
#
# Steps, each writing its log under --out and its numbers into summary.txt:
#   1. the bundle's launcher: which CUDA libraries, which driver (nvidia-smi where present);
#   2. caffe device_query --gpu 0;
#   3. caffe time, CPU and --gpu 0, forward and backward, of each deploy net (tutorial CNN,
#      patch classifier, segmenter) at the batch size its training uses (force_backward on);
#   4. caffe train, CPU and --gpu 0, of the tutorial CNN and the fetal patch classifier on the
#      small LMDBs, the same iterations: iterations/s and final validation accuracy;
#   5. caffe test of the CPU-trained weights on CPU and on GPU 0: per-batch loss and accuracy
#      must agree (relative difference under 1e-4);
#   6. NCCL: `caffe train --gpu all` where two or more GPUs are visible; one GPU cannot use it.
# On a GPU machine one run should take 1 to 3 minutes, most of it the CPU baselines, which get
# OPENBLAS_NUM_THREADS threads (default: every core; `make gpu-check` keeps the project's 1).
# Exits non-zero at the first step that fails, or when CPU and GPU disagree.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bundle="" data="data/gpu_check" out="runs/gpu_check" iterations=200 cpu_only=0 cpu_caffe=""
die() { echo "gpu_check: error: $*" >&2; exit 1; }
step() { printf '\n=== %s\n' "$*" >&2; }
usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --bundle) bundle=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --iterations) iterations=$2; shift 2 ;;
    --cpu-only) cpu_only=1; shift ;;
    --cpu-caffe) cpu_caffe=$2; shift 2 ;;
    *) echo "gpu_check: unknown option $1" >&2; usage 2 ;;
  esac
done
[ -z "$cpu_caffe" ] || [ "$cpu_only" = 1 ] || die "--cpu-caffe goes with --cpu-only (on a GPU machine the bundle's caffe does both halves)"
[ -z "$cpu_caffe" ] || [ -x "$cpu_caffe" ] || die "--cpu-caffe $cpu_caffe: not an executable"
[[ $iterations =~ ^[1-9][0-9]*$ ]] || die "--iterations must be a positive whole number, not '$iterations'"
[ -n "$bundle" ] || bundle=$(tools/gpu_bundle.sh --print)
[ -e "$bundle" ] || die "$bundle: no GPU bundle there (make gpu-bundle makes it)"
for lmdb in mnist/train_lmdb mnist/val_lmdb fetal_channels/train_lmdb fetal_channels/val_lmdb; do
  [ -f "$data/$lmdb/data.mdb" ] || die "$data/$lmdb: not an LMDB (make gpu-check-data writes the small LMDBs)"
done
# --out is ours alone: new, empty, or an earlier run of this script (its marker), then replaced.
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.gpu_check" ]; then
  die "$out exists and is not an earlier gpu_check output; choose another --out"
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/.gpu_check"
out=$(cd "$out" && pwd) data=$(cd "$data" && pwd)
summary="$out/summary.txt"
say() { echo "$*" | tee -a "$summary" >&2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.1fx" : "-"), a / b }'; }
# caffe time/train/test speak through glog INFO lines, which this script reads.
export GLOG_logtostderr=1 GLOG_minloglevel=0 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}

step "1. the bundle and the machine"
if [ -d "$bundle" ]; then caffe="$(cd "$bundle" && pwd)/caffe"
else
  tar -xJf "$bundle" -C "$out" || die "$bundle: not a GPU bundle tarball (tar could not unpack it)"
  caffe="$out/fetal-caffe-gpu/caffe"
fi
[ -x "$caffe" ] || die "$bundle holds no fetal-caffe-gpu/caffe launcher"
trainer=${cpu_caffe:-$caffe}  # the caffe of steps 4 and 5
"$caffe" --bundle-info > "$out/bundle_info.log" 2>&1 || { cat "$out/bundle_info.log" >&2; die "the bundle's launcher failed (above)"; }
say "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname), $(nproc) CPU cores, OpenBLAS $OPENBLAS_NUM_THREADS thread(s)"
say "$(sed -n 's/^caffe (fetal-biometry GPU bundle): //p' "$out/bundle_info.log")"
say "bundle: $(sed -n 's/^build: //p' "$out/bundle_info.log"); glibc here $(sed -n 's/^glibc here: //p' "$out/bundle_info.log")"
[ -z "$cpu_caffe" ] || say "training and testing (steps 4, 5) with $cpu_caffe"
gpus=0
if [ "$cpu_only" = 0 ]; then
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here (--cpu-only runs the CPU half)"
  gpus=$(nvidia-smi -L | grep -c '^GPU ') || true
  say "$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU /')"
fi

step "2. caffe device_query --gpu 0"
if "$caffe" device_query --gpu 0 > "$out/device_query.log" 2>&1; then
  [ "$cpu_only" = 0 ] || say "device_query: a GPU is visible after all; run without --cpu-only"
  say "device_query: $(grep -E 'Name:|Major revision|Minor revision|Total global' "$out/device_query.log" \
    | sed 's/.*\] *//' | tr -s ' ' | paste -sd ';' -)"
else
  [ "$cpu_only" = 1 ] || die "caffe device_query --gpu 0 failed (see $out/device_query.log)"
  grep -q 'Check failed\|stack trace' "$out/device_query.log" && die "device_query aborted instead of refusing (see $out/device_query.log)"
  say "device_query without a GPU: $(grep 'caffe: error:' "$out/device_query.log")"
fi

step "3. caffe time of the deploy nets at their training batch sizes"
mkdir -p "$out/nets"
time_net() {  # NAME BATCH MODE: "forward_ms backward_ms" of caffe time
  local net="$out/nets/$1_deploy_b$2.prototxt" log="$out/time_$1_$3.log" flags=() iters=20
  [ "$3" = gpu ] && flags=(--gpu 0) iters=100
  [ "$3" = cpu ] && [ "$1" = segmenter_channels ] && iters=5
  { echo "force_backward: true"; sed '0,/dim: 1$/s//dim: '"$2"'/' "prototxt/$1/deploy.prototxt"; } > "$net"
  "$caffe" time --model="$net" --iterations=$iters ${flags[@]+"${flags[@]}"} > "$log" 2>&1 \
    || die "caffe time $1 on $3 failed (see $log)"
  echo "$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$log") $(sed -n 's/.*Average Backward pass: \([0-9.]*\) ms.*/\1/p' "$log")"
}
for spec in tutorial_cnn:64 fetal_channels:64 segmenter_channels:4; do
  name=${spec%:*} batch=${spec#*:}
  times=$(time_net "$name" "$batch" cpu) || exit 1
  read -r cpu_f cpu_b <<< "$times"
  line="caffe time $name, batch $batch: CPU forward $cpu_f ms, backward $cpu_b ms"
  if [ "$cpu_only" = 0 ]; then
    times=$(time_net "$name" "$batch" gpu) || exit 1
    read -r gpu_f gpu_b <<< "$times"
    line+="; GPU forward $gpu_f ms ($(ratio "$cpu_f" "$gpu_f")), backward $gpu_b ms ($(ratio "$cpu_b" "$gpu_b"))"
  fi
  say "$line"
done

step "4. caffe train, $iterations iterations, CPU$([ "$cpu_only" = 0 ] && echo " and GPU 0")"
# Copies of the checked-in nets reading the small LMDBs; the solver tests once, at the end, on
# the whole small validation LMDB (batches of 100), and snapshots there.
make_solver() {  # NAME LMDB_DIR VAL_RECORDS -> solver path
  local dir="$out/nets/$1"
  mkdir -p "$dir"
  for part in train val; do
    sed "s#source: \"data/[^\"]*/\\(train\\|val\\)_lmdb\"#source: \"$data/$2/\\1_lmdb\"#" \
      "prototxt/$1/$part.prototxt" > "$dir/$part.prototxt"
  done
  # Settings replaced by deleting and appending them (text protobuf refuses a field twice).
  { grep -vE '^(train_net|test_net|test_iter|test_interval|max_iter|snapshot|snapshot_prefix|display):' \
      "prototxt/$1/solver.prototxt"
    echo "train_net: \"$dir/train.prototxt\""; echo "test_net: \"$dir/val.prototxt\""
    echo "test_iter: $(($3 / 100))"; echo "test_interval: $iterations"; echo "max_iter: $iterations"
    echo "snapshot: 0"; echo "display: $(( iterations >= 10 ? iterations / 10 : 1 ))"
    echo "snapshot_prefix: \"$dir/net\""; } > "$dir/solver.prototxt"
  echo "$dir/solver.prototxt"
}
train_run() {  # NAME MODE -> "iterations/s accuracy"; the log and the final weights under nets/NAME/MODE
  local dir="$out/nets/$1" flags=()
  [ "$2" = gpu ] && flags=(--gpu 0)
  sed "s#^snapshot_prefix: .*#snapshot_prefix: \"$dir/$2/net\"#" "$dir/solver.prototxt" > "$dir/solver_$2.prototxt"
  mkdir -p "$dir/$2"
  "$trainer" train --solver="$dir/solver_$2.prototxt" ${flags[@]+"${flags[@]}"} > "$dir/$2/train.log" 2>&1 \
    && grep -q "Optimization Done" "$dir/$2/train.log" || die "caffe train $1 on $2 failed (see $dir/$2/train.log)"
  # Rate between the first and the last "Iteration N" display lines, from glog's timestamps.
  awk '/\] Iteration [0-9]+ \(/ || /\] Iteration [0-9]+, loss/ {
         split($2, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]
         match($0, /Iteration [0-9]+/); i = substr($0, RSTART + 10, RLENGTH - 10) + 0
         if (n++ == 0) { s0 = s; i0 = i } s1 = s; i1 = i }
       / accuracy = / { acc = $NF }
       END { printf "%.1f %s\n", (s1 > s0 ? (i1 - i0) / (s1 - s0) : 0), acc }' "$dir/$2/train.log"
}
declare -A weights
for spec in tutorial_cnn:mnist:1000 fetal_channels:fetal_channels:400; do
  IFS=: read -r name lmdbs val <<< "$spec"
  make_solver "$name" "$lmdbs" "$val" > /dev/null
  result=$(train_run "$name" cpu) || exit 1
  read -r cpu_rate cpu_acc <<< "$result"
  weights[$name]="$out/nets/$name/cpu/net_iter_$iterations.caffemodel"
  line="caffe train $name, $iterations iterations: CPU $cpu_rate it/s, accuracy $cpu_acc"
  if [ "$cpu_only" = 0 ]; then
    result=$(train_run "$name" gpu) || exit 1
    read -r gpu_rate gpu_acc <<< "$result"
    line+="; GPU $gpu_rate it/s ($(ratio "$gpu_rate" "$cpu_rate")), accuracy $gpu_acc"
  fi
  say "$line"
done

step "5. CPU and GPU agree: caffe test of the CPU-trained weights"
test_run() {  # NAME MODE -> the log; per-batch outputs in it
  local dir="$out/nets/$1" flags=() log="$out/nets/$1/test_$2.log"
  [ "$2" = gpu ] && flags=(--gpu 0)
  "$trainer" test --model="$dir/val.prototxt" --weights="${weights[$1]}" --iterations=4 \
    ${flags[@]+"${flags[@]}"} > "$log" 2>&1 || die "caffe test $1 on $2 failed (see $log)"
  grep -q '\] Batch 0, ' "$log" || die "caffe test $1 on $2 printed no batch outputs (see $log)"
  echo "$log"
}
differences() {  # OUTPUT CPU_LOG GPU_LOG -> "worst relative, worst absolute" difference per batch
  paste <(sed -n "s/.*\] Batch [0-9]*, $1 = //p" "$2") <(sed -n "s/.*\] Batch [0-9]*, $1 = //p" "$3") \
    | awk '{ d = $1 - $2; d = d < 0 ? -d : d; m = $1 < 0 ? -$1 : $1; r = d / (m > 1e-6 ? m : 1e-6)
             if (r > wr) wr = r; if (d > wa) wa = d; n++ }
           END { if (n == 0) exit 1; printf "%.1e %.2g\n", wr, wa }' \
    || die "no '$1' per batch in $2 and $3"
}
disagree=0
for name in tutorial_cnn fetal_channels; do
  cpu_log=$(test_run "$name" cpu) || exit 1
  if [ "$cpu_only" = 1 ]; then
    say "caffe test $name on CPU, batch 0: $(grep '\] Batch 0, ' "$cpu_log" | sed 's/.*\] Batch 0, //' | paste -sd ',' - | sed 's/,/, /g') (GPU side not run)"
    continue
  fi
  gpu_log=$(test_run "$name" gpu) || exit 1
  # Loss within 1e-4 relative; accuracy within 0.01, one image of a batch of 100, since a
  # prediction on the boundary may fall either way under a different summation order.
  loss=$(differences loss "$cpu_log" "$gpu_log") || exit 1
  accuracy=$(differences accuracy "$cpu_log" "$gpu_log") || exit 1
  read -r loss_rel _ <<< "$loss"; read -r _ accuracy_abs <<< "$accuracy"
  verdict=agree
  awk -v r="$loss_rel" -v a="$accuracy_abs" 'BEGIN { exit !(r < 1e-4 && a <= 0.0100001) }' || { verdict=DISAGREE; disagree=1; }
  say "caffe test $name, 4 batches of 100, CPU vs GPU: loss within $loss_rel (relative), accuracy within $accuracy_abs: $verdict"
done

step "6. NCCL"
if [ "$gpus" -ge 2 ]; then
  dir="$out/nets/tutorial_cnn"
  sed "s#^snapshot_prefix: .*#snapshot_prefix: \"$dir/all/net\"#" "$dir/solver.prototxt" > "$dir/solver_all.prototxt"
  mkdir -p "$dir/all"
  "$caffe" train --solver="$dir/solver_all.prototxt" --gpu all > "$dir/all/train.log" 2>&1 \
    && grep -q "Optimization Done" "$dir/all/train.log" || die "caffe train --gpu all failed (see $dir/all/train.log)"
  say "NCCL: caffe train tutorial_cnn --gpu all on $gpus GPUs ran $iterations iterations"
else
  say "NCCL: not exercised: $gpus GPU(s) visible; caffe train --gpu all needs two or more to use NCCL"
fi
echo >&2; cat "$summary" >&2
[ "$disagree" = 0 ] || die "CPU and GPU disagree (above)"
