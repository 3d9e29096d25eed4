#!/usr/bin/env python3
"""Frames per second of a sweep: the batched sequence path, the one-frame tools/infer.py path, the roofline.

For a 256x256 and a 744x562 simulated sequence (a few simulated frames, cycled), at 1 and 2
threads (fetal_biometry.inference.backends.set_threads), side by side in one run:

  sequence   fetal_biometry.inference.dense.SequenceClassifier: geometry, resampling and net input
             windows planned once per sequence, frames in batches, only the fan's grid points scored
  analyse    the same plus the landmark score of every frame and the full measurement of
             the best candidates (what tools/sweep.py does, less its pictures)
  infer      one frame at a time as tools/infer.py classifies a scan
             (DenseClassifier.classify_scan: the same engine, a plan per scan, batches of one)
  roofline   this machine's measured SGEMM rate (the BLAS Caffe links, benchmarks/roofline.py, a
             2048^3 product, best of 3) divided by the multiply-adds per frame of the tiles the
             sequence path runs, counted layer by layer (convolutions and inner products)

Ratios are against the infer path and the roofline of the same run. The machine is shared:
every figure is a best of repeats, and the load average is printed beside them.

With --memory N it also writes an N-frame 744x562 stack (0.28 mm, as ACOUSLIC-AI's sweeps)
and runs tools/sweep.py on it and on a 140-frame one in child processes, printing each one's
peak resident memory: flat in the sequence length when the stack is streamed. Given a
segmenter's model folder it measures only that (its frames/s: benchmarks/bench_inference.py).

    python benchmarks/bench_sweep.py [--model runs/fetal_channels] [--frames 16] [--memory 840]
                                     [--backend caffe|opencv]

Without a model folder the nets carry untrained weights at the demo's spacing (0.672 mm):
enough to time them.
"""
import argparse
import json
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
from fetal_biometry import paths  # noqa: E402
from fetal_biometry.caffe_env import caffe  # noqa: E402
from fetal_biometry.inference import backends, dense as inference  # noqa: E402
from fetal_biometry.measure import sweeps  # noqa: E402
from fetal_biometry.nets import model as model_folder, spec as nets  # noqa: E402
from fetal_biometry.simulator import sweeps as sweep_simulator  # noqa: E402

SIZES = ((256, 256), (562, 744))
DEMO_SPACING_MM = 0.672


def sequence_macs(classifier: inference.SequenceClassifier, twin: pathlib.Path) -> int:
    """Multiply-adds per frame of every tile the sequence path runs (``twin``: the dense net)."""
    c, total = classifier.classifier, 0
    for window in classifier.plan.passes:
        for (r0, r1), (c0, c1) in window.tiles():
            shape = (1, c.channels, inference.STRIDE * (r1 - r0 - 1) + c.patch,
                     inference.STRIDE * (c1 - c0 - 1) + c.patch)
            total += roofline.multiply_adds(twin, shape)
    return total


def classifier_for(model: pathlib.Path, encoding: str, backend: str
                   ) -> tuple[inference.DenseClassifier, pathlib.Path, str]:
    """The classifier, its dense twin's prototxt and a label."""
    folder = pathlib.Path(tempfile.mkdtemp())
    if (model / model_folder.FILE).is_file():
        loaded = model_folder.load(model)
        twin = inference.make_twin(loaded.deploy, loaded.weights, folder)[0]
        return inference.DenseClassifier.from_model(loaded, backend), twin, f"{model} ({loaded.encoding})"
    deploy = nets.save(nets.patch_classifier_deploy(3 if encoding == "channels" else 1), folder / "deploy.prototxt")
    weights = folder / "weights.caffemodel"
    caffe().Net(str(deploy), caffe().TEST).save(str(weights))
    twin = inference.make_twin(deploy, weights, folder)
    return (inference.DenseClassifier(deploy, weights, encoding, DEMO_SPACING_MM, backend=backend, twin=twin),
            twin[0], f"untrained {encoding} net at {DEMO_SPACING_MM} mm")


def best_rate(run, frames: int, repeats: int = 2) -> float:
    """Frames per second, best of ``repeats`` (the machine is shared)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return frames / best


def bench_size(dense, twin, shape, frames: int, reference: int, blas, threads) -> None:
    sim = sweep_simulator.simulate_sweep(9, 0, frames=4, shape=shape)
    loop = [sim.frames[k % 4] for k in range(frames)]
    seq = inference.SequenceClassifier(dense, sim.geometry, shape, sim.spacing_mm)
    list(seq.classify(iter(loop[:seq.batch])))  # warm-up
    dense.classify_scan(loop[0], sim.geometry, sim.spacing_mm)
    macs = sequence_macs(seq, twin)
    small = seq.plan.shape
    print(f"\n{shape[1]}x{shape[0]} frames at {sim.spacing_mm:.3f} mm -> {small[1]}x{small[0]} "
          f"at the model's spacing; {len(seq.plan.passes)} pass(es), {macs / 1e9:.2f} G multiply-adds per frame "
          f"(fan {seq.plan.inside.mean():.0%} of the frame)")
    print(f"{'threads':>7} {'SGEMM GMAC/s':>12} {'roofline':>9} {'sequence':>9} {'analyse':>8} {'infer':>7} "
          f"{'seq/infer':>9} {'seq/roof':>8} {'load':>5}")
    for n in threads:
        backends.set_threads(n)
        rate = roofline.sgemm_rate(blas)
        roof = rate / macs
        seq_fps = best_rate(lambda: list(seq.classify(iter(loop))), frames)
        analyse_fps = best_rate(lambda: sweeps.analyse(seq, iter(loop), sim.spacing_mm, frames), frames, 1)
        infer_fps = best_rate(lambda: [dense.classify_scan(f, sim.geometry, sim.spacing_mm)
                                       for f in loop[:reference]], reference)
        print(f"{n:>7} {rate / 1e9:>12.1f} {roof:>9.2f} {seq_fps:>9.2f} {analyse_fps:>8.2f} {infer_fps:>7.2f} "
              f"{seq_fps / infer_fps:>9.2f} {seq_fps / roof:>8.0%} {os.getloadavg()[0]:>5.1f}")


def peak_memory(model: pathlib.Path, frames: int) -> None:
    """Peak RSS of tools/sweep.py on a 140-frame and a ``frames``-frame 744x562 stack."""
    folder = pathlib.Path(tempfile.mkdtemp())
    sim = sweep_simulator.simulate_sweep(9, 0, frames=8, shape=(562, 744))
    geometry = folder / "probe.json"
    geometry.write_text(json.dumps(sweep_simulator.truth_record(sim)))
    probe_spacing = 0.28
    for count in (140, frames):
        stack = folder / f"loop{count}.mha"
        sweep_simulator.write_stack(stack, np.stack([sim.frames[k % 8] for k in range(count)]), probe_spacing)
        code = ("import resource, runpy, sys; sys.argv = sys.argv[1:]\n"
                "try:\n    runpy.run_path('tools/sweep.py', run_name='__main__')\n"
                "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
                "print('PEAK_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code, "tools/sweep.py", str(model), str(stack),
                                 "--geometry", str(geometry), "--out", str(folder / f"out{count}")],
                                cwd=ROOT, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
        peak = float(result.stdout.split("PEAK_MB")[-1])
        print(f"tools/sweep.py on {count} frames of 744x562 ({stack.stat().st_size / 1e6:.0f} MB compressed, "
              f"{count * 744 * 562 / 1e6:.0f} MB decoded): peak RSS {peak:.0f} MB, "
              f"{time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / paths.run_dir("fetal_channels"),
                        help="a model folder (default: make demo's channels model; untrained weights without one)")
    parser.add_argument("--encoding", default="channels", choices=("channels", "rotate", "none"),
                        help="encoding of the untrained net when there is no model folder")
    parser.add_argument("--frames", type=int, default=16, help="frames per timed sequence (default 16)")
    parser.add_argument("--reference", type=int, default=4, help="frames timed on the infer path (default 4)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="threads (default 1 2)")
    parser.add_argument("--backend", choices=backends.BACKENDS, default="caffe", help="what runs the nets")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="also measure tools/sweep.py's peak memory on an N-frame 744x562 stack (needs a model folder)")
    args = parser.parse_args()
    if (args.model / model_folder.FILE).is_file() and model_folder.load(args.model).kind == model_folder.SEGMENTER:
        print(f"{args.model} is a segmenter: its frames/s are benchmarks/bench_inference.py --segmenter's")
        if args.memory:
            peak_memory(args.model, args.memory)
        return
    blas = roofline.caffe_blas()
    dense, twin, label = classifier_for(args.model, args.encoding, args.backend)
    print(f"model: {label}; {args.backend}; batch {inference.BATCH}; frames/s, best of repeats; "
          f"load = 1-minute load average")
    for shape in SIZES:
        bench_size(dense, twin, shape, args.frames, args.reference, blas, args.threads)
    if args.memory:
        peak_memory(args.model, args.memory)


if __name__ == "__main__":
    main()
