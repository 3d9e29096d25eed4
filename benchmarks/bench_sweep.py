#!/usr/bin/env python3
"""Frames per second of a sweep: the batched sequence path, the one-frame tools/infer.py path, the roofline.

For a 256x256 and a 744x562 simulated sequence (a few simulated frames, cycled), at OpenBLAS 1
and 2 threads, side by side in one run:

  sequence   fetal_biometry.inference.sequences.SequenceClassifier: geometry, resampling and net input
             window once per sequence, frames in batches, only the fan's grid points scored
  analyse    the same plus the landmark score of every frame and the full measurement of
             the best candidates (what tools/sweep.py does, less its pictures)
  infer      one frame at a time as tools/infer.py classifies a scan
             (DenseClassifier.classify_scan: beam directions, resampling, whole-scan tiles)
  roofline   this machine's measured SGEMM rate (Caffe's own OpenBLAS, a 2048^3 product,
             best of 3) divided by the multiply-adds per frame of the nets the sequence path
             runs, counted layer by layer from their prototxt (convolutions and inner products)

Ratios are against the infer path and the roofline of the same run. The machine is shared:
every figure is a best of repeats, and the load average is printed beside them.

With --memory N it also writes an N-frame 744x562 stack (0.28 mm, as ACOUSLIC-AI's sweeps)
and runs tools/sweep.py on it and on a 140-frame one in child processes, printing each one's
peak resident memory: flat in the sequence length when the stack is streamed.

    python benchmarks/bench_sweep.py [--model runs/fetal_channels] [--frames 16] [--memory 840]

Without a model folder the nets carry untrained weights at the demo's spacing (0.672 mm):
enough to time them.
"""
import argparse
import ctypes
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

from fetal_biometry import paths  # noqa: E402
from fetal_biometry.caffe_env import caffe  # noqa: E402
from fetal_biometry.inference import dense as inference  # noqa: E402
from fetal_biometry.inference import sequences as sequence_inference  # noqa: E402
from fetal_biometry.measure import sweeps  # noqa: E402
from fetal_biometry.nets import model as model_folder, spec as nets  # noqa: E402
from fetal_biometry.simulator import sweeps as sweep_simulator  # noqa: E402

SIZES = ((256, 256), (562, 744))
DEMO_SPACING_MM = 0.672


def openblas() -> ctypes.CDLL:
    """Caffe's own OpenBLAS (the library its process has loaded)."""
    caffe()
    with open("/proc/self/maps") as maps:
        found = sorted({line.split()[-1] for line in maps if "openblas" in line.split()[-1]})
    if not found:
        raise RuntimeError("Caffe's process has no OpenBLAS loaded; the roofline needs it")
    return ctypes.CDLL(found[0])


def sgemm_rate(blas: ctypes.CDLL, n: int = 2048, repeats: int = 3) -> float:
    """Best single-precision matrix-multiply rate, multiply-adds per second, of an n^3 product."""
    a, b = (np.random.default_rng(0).random((n, n), np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    pointer = ctypes.POINTER(ctypes.c_float)
    args = [ctypes.c_int(101), ctypes.c_int(111), ctypes.c_int(111), n, n, n, ctypes.c_float(1.0),
            a.ctypes.data_as(pointer), n, b.ctypes.data_as(pointer), n, ctypes.c_float(0.0),
            c.ctypes.data_as(pointer), n]
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        blas.cblas_sgemm(*args)
        best = min(best, time.perf_counter() - start)
    assert np.allclose(c[0, :4], a[0] @ b[:, :4], rtol=1e-3)
    return n ** 3 / best


def multiply_adds(prototxt: pathlib.Path) -> int:
    """Multiply-adds of one input of a net, from its prototxt: output size times fan-in of
    every convolution and inner product."""
    net = caffe().Net(str(prototxt), caffe().TEST)
    batch = net.blobs["data"].data.shape[0]
    total = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type in ("Convolution", "InnerProduct"):
            top = net.blobs[net.top_names[name][0]].data
            total += top.size // batch * int(np.prod(net.params[name][0].data.shape[1:]))
    return total


def sequence_macs(classifier: sequence_inference.SequenceClassifier) -> int:
    """Multiply-adds per frame of every pass the sequence path runs."""
    total = 0
    with tempfile.TemporaryDirectory() as folder:
        for window in classifier.passes:
            (r0, r1), (c0, c1) = window.rows, window.cols
            c = classifier.classifier
            shape = (inference.STRIDE * (r1 - r0 - 1) + c.patch, inference.STRIDE * (c1 - c0 - 1) + c.patch)
            fcn = nets.patch_classifier_dense(c.channels, *shape, c.patch, c.classes)
            total += multiply_adds(nets.save(fcn, pathlib.Path(folder, "fcn.prototxt")))
    return total


def classifier_for(model: pathlib.Path, encoding: str) -> tuple[inference.DenseClassifier, str]:
    if (model / model_folder.FILE).is_file():
        loaded = model_folder.load(model)
        return inference.DenseClassifier.from_model(loaded), f"{model} ({loaded.encoding})"
    folder = pathlib.Path(tempfile.mkdtemp())
    deploy = nets.save(nets.patch_classifier_deploy(3 if encoding == "channels" else 1), folder / "deploy.prototxt")
    weights = folder / "weights.caffemodel"
    caffe().Net(str(deploy), caffe().TEST).save(str(weights))
    return (inference.DenseClassifier(deploy, weights, encoding, DEMO_SPACING_MM),
            f"untrained {encoding} net at {DEMO_SPACING_MM} mm")


def best_rate(run, frames: int, repeats: int = 2) -> float:
    """Frames per second, best of ``repeats`` (the machine is shared)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return frames / best


def bench_size(dense, shape, frames: int, reference: int, blas, threads) -> None:
    sim = sweep_simulator.simulate_sweep(9, 0, frames=4, shape=shape)
    loop = [sim.frames[k % 4] for k in range(frames)]
    seq = sequence_inference.SequenceClassifier(dense, sim.geometry, shape, sim.spacing_mm)
    list(seq.classify(iter(loop[:seq.batch])))  # build the nets
    dense.classify_scan(loop[0], sim.geometry, sim.spacing_mm)
    macs = sequence_macs(seq)
    small = seq.small
    print(f"\n{shape[1]}x{shape[0]} frames at {sim.spacing_mm:.3f} mm -> {small[1]}x{small[0]} "
          f"at the model's spacing; {len(seq.passes)} pass(es), {macs / 1e9:.2f} G multiply-adds per frame "
          f"(fan {seq.inside.mean():.0%} of the frame)")
    print(f"{'threads':>7} {'SGEMM GMAC/s':>12} {'roofline':>9} {'sequence':>9} {'analyse':>8} {'infer':>7} "
          f"{'seq/infer':>9} {'seq/roof':>8} {'load':>5}")
    for n in threads:
        blas.openblas_set_num_threads(n)
        rate = sgemm_rate(blas)
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
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OpenBLAS threads (default 1 2)")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="also measure tools/sweep.py's peak memory on an N-frame 744x562 stack (needs a model folder)")
    args = parser.parse_args()
    blas = openblas()
    dense, label = classifier_for(args.model, args.encoding)
    print(f"model: {label}; batch {sequence_inference.BATCH}; frames/s, best of repeats; load = 1-minute load average")
    for shape in SIZES:
        bench_size(dense, shape, args.frames, args.reference, blas, args.threads)
    if args.memory:
        peak_memory(args.model, args.memory)


if __name__ == "__main__":
    main()
