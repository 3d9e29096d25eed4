#!/usr/bin/env python3
"""Frames per second of dense inference: Caffe against OpenCV's dnn, one and two threads, at
256x256 and 744x562, each against this machine's SGEMM rate measured in the same run; and peak
memory over many frames.

For each model kind (the patch classifier's dense twin at the demo's 0.672 mm; the segmenter, a
model folder given by --segmenter, else the checked-in channels U-Net: depth 4, 8 base channels,
at make demo's 1.0 mm, random weights) a simulated sweep's frames (4 distinct, cycled) run
through the one engine (:class:`fetal_biometry.inference.dense.SequenceClassifier`: resampling to
the model's spacing, planned windows and tiles, batches) on each backend. Columns:

  fps        frames per second of the classification, best of 2 (the machine is shared)
  choice     frames per second of the whole frame choice of tools/sweep.py less its pictures
             (fetal_biometry.measure.sweeps.analyse_sequence: the patch classifier classifies
             every frame and measures the best 8; the segmenter segments every 2nd frame, then
             the frames around the best, and measures the best 8), one run
  GMAC/f     multiply-adds per frame of the tiles the net runs
  SGEMM      the BLAS Caffe links, GMAC/s at this thread count (benchmarks/roofline.py)
  roof       share of the SGEMM rate reached: fps x GMAC/f / SGEMM
  load       1-minute load average when the row was measured

--memory N classifies N frames of 744x562 in a child process per backend and model kind and
prints its peak resident memory (VmHWM, reset once the model is loaded and the frames simulated)
before the first frame and after a tenth, half and all of them: flat when nothing grows per frame.

    python benchmarks/bench_inference.py [--model runs/fetal_channels] [--segmenter runs/segmenter_beam]
                                         [--frames 8] [--memory 400]

Without a model folder the patch classifier carries untrained weights; the segmenter always does
(weights do not change the cost).
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import roofline  # noqa: E402
from benchmarks.bench_sweep import DEMO_SPACING_MM, SIZES, classifier_for, sequence_macs  # noqa: E402
from fetal_biometry import paths  # noqa: E402
from fetal_biometry.inference import backends, dense as inference, segmentation  # noqa: E402
from fetal_biometry.measure import sweeps  # noqa: E402
from fetal_biometry.nets import checks, model as model_folder  # noqa: E402

SEGMENTER = ROOT / "prototxt" / "segmenter_channels" / "deploy.prototxt"
SEGMENTER_SPACING_MM = 1.0
from fetal_biometry.simulator import sweeps as sweep_simulator  # noqa: E402


def frames_per_second(seq, loop: list[np.ndarray], repeats: int = 2) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in seq.classify(iter(loop)):
            pass
        best = min(best, time.perf_counter() - start)
    return len(loop) / best


def segmenter_for(backend: str, folder: pathlib.Path | None) -> tuple[segmentation.Segmenter, pathlib.Path, str]:
    """The segmenter of a model folder, else the checked-in channels U-Net with random weights
    (saved once); its deploy net and a label."""
    if folder is not None:
        model = model_folder.load(folder)
        return segmentation.Segmenter.from_model(model, backend), model.deploy, f"{folder} ({model.encoding})"
    weights = pathlib.Path(tempfile.gettempdir(), "bench_segmenter.caffemodel")
    if not weights.is_file():
        checks.net(SEGMENTER).save(str(weights))
    segmenter = segmentation.Segmenter(SEGMENTER, weights, "channels", SEGMENTER_SPACING_MM, backend=backend)
    return segmenter, SEGMENTER, f"{SEGMENTER.relative_to(ROOT)}, random weights, at {SEGMENTER_SPACING_MM} mm"


def segmenter_macs(seq: inference.SequenceClassifier, deploy: pathlib.Path) -> int:
    """Multiply-adds per frame of the U-Net over the padded encoded frame."""
    s, plan = seq.classifier, seq.plan
    height, width = s.planes(np.zeros(plan.shape, np.uint8), plan.probe).shape[1:]
    padded = [-(-side // s.multiple) * s.multiple for side in (height, width)]
    return roofline.multiply_adds(deploy, (1, s.channels, *padded))


def bench(model: pathlib.Path, segmenter: pathlib.Path | None, frames: int, threads: list[int], blas) -> None:
    print(f"{'kind':<16} {'size':>8} {'backend':>7} {'threads':>7} {'fps':>7} {'choice':>7} {'GMAC/f':>7} "
          f"{'SGEMM':>6} {'roof':>5} {'load':>5}")
    rates = {}
    for n in threads:
        backends.set_threads(n)
        rates[n] = roofline.sgemm_rate(blas)
    for shape in SIZES:
        sim = sweep_simulator.simulate_sweep(9, 0, frames=4, shape=shape)
        loop = [sim.frames[k % 4] for k in range(frames)]
        for kind, backend in [(k, b) for k in ("patch classifier", "segmenter") for b in backends.BACKENDS]:
            if kind == "segmenter":
                net, deploy, segmenter_label = segmenter_for(backend, segmenter)
                seq = inference.SequenceClassifier(net, sim.geometry, shape, sim.spacing_mm)
                macs = segmenter_macs(seq, deploy)
            else:
                classifier, twin, label = classifier_for(model, "channels", backend)
                seq = inference.SequenceClassifier(classifier, sim.geometry, shape, sim.spacing_mm)
                macs = sequence_macs(seq, twin)
            for n in threads:
                backends.set_threads(n)
                list(seq.classify(iter(loop[:seq.batch])))  # warm-up
                fps = frames_per_second(seq, loop)
                start = time.perf_counter()
                sweeps.analyse_sequence(seq, lambda: iter(loop), sim.spacing_mm, len(loop))
                choice = len(loop) / (time.perf_counter() - start)
                print(f"{kind:<16} {shape[1]:>4}x{shape[0]:<3} {backend:>7} {n:>7} "
                      f"{fps:>7.2f} {choice:>7.2f} {macs / 1e9:>7.2f} {rates[n] / 1e9:>6.1f} "
                      f"{fps * macs / rates[n]:>5.0%} {os.getloadavg()[0]:>5.1f}")
    print(f"patch classifier: {label}; segmenter: {segmenter_label}")


MEMORY = """
import sys
sys.path.insert(0, {root!r})
from benchmarks.bench_inference import segmenter_for
from benchmarks.bench_sweep import classifier_for
from fetal_biometry.inference import dense as inference
from fetal_biometry.simulator import sweeps as sweep_simulator
import pathlib
count, backend, kind = int(sys.argv[1]), sys.argv[2], sys.argv[4]
sim = sweep_simulator.simulate_sweep(9, 0, frames=4, shape=(562, 744))
folder = pathlib.Path(sys.argv[3]) if sys.argv[3] != "-" else None
classifier = (segmenter_for(backend, folder)[0] if kind == "segmenter"
              else classifier_for(folder, "channels", backend)[0])
seq = inference.SequenceClassifier(classifier, sim.geometry, (562, 744), sim.spacing_mm)
def peak_mb():
    status = pathlib.Path("/proc/self/status").read_text().split("\\n")
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
pathlib.Path("/proc/self/clear_refs").write_text("5")  # the peak from here on: the simulation's is not inference's
print(0, peak_mb(), flush=True)
marks = {{max(1, count // 10), count // 2, count}}
for k, _ in enumerate(seq.classify(sim.frames[i % 4] for i in range(count)), 1):
    if k in marks:
        print(k, peak_mb(), flush=True)
"""


def memory(model: pathlib.Path, segmenter: pathlib.Path | None, count: int) -> None:
    for kind, folder in (("patch classifier", model), ("segmenter", segmenter)):
        for backend in backends.BACKENDS:
            done = subprocess.run([sys.executable, "-c", MEMORY.format(root=str(ROOT)), str(count), backend,
                                   str(folder or "-"), kind], cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            marks = [line.split() for line in done.stdout.split("\n") if line.strip()]
            print(f"{kind}, {backend}: peak RSS over {count} frames of 744x562: "
                  + ", ".join(f"{float(mb):.0f} MB after {k}" for k, mb in marks))
            print(f"{kind}, {backend}: growth from frame {marks[1][0]} to {count}: "
                  f"{(float(marks[-1][1]) - float(marks[1][1])) / (count - int(marks[1][0])) * 1024:.1f} kB a frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / paths.run_dir("fetal_channels"),
                        help="a patch classifier's model folder (default: make demo's channels model; "
                             f"untrained weights at {DEMO_SPACING_MM} mm without one)")
    parser.add_argument("--segmenter", type=pathlib.Path, metavar="DIR",
                        help="a segmenter's model folder (default: the checked-in channels U-Net, random weights)")
    parser.add_argument("--frames", type=int, default=8, help="frames per timed run (default 8)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="threads (default 1 2)")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="also the peak memory over N frames of 744x562, per backend")
    args = parser.parse_args()
    bench(args.model, args.segmenter, args.frames, args.threads, roofline.caffe_blas())
    if args.memory:
        memory(args.model, args.segmenter, args.memory)


if __name__ == "__main__":
    main()
