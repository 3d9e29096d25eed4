#!/usr/bin/env python3
"""Scans per second of the B-mode simulator, on one CPU core.

Prints rates for the same cases, so the physics' cost can be judged:
  simulate   the whole case (TRAINING ranges, the default): anatomy, labels with shadows,
             echo physics, scan conversion
  narrow     the same with NARROW ranges (the first round's simulator: no clutter, haze,
             reverberation or TGC errors): the reference the widened physics is judged by
  foreign    the same with FOREIGN ranges (the out-of-training check set)
  head       transthalamic head planes (TRAINING ranges): the same physics, a skull that
             reverberates
  femur      femur planes (TRAINING ranges)
  labels     anatomy and label maps only (beam grid, shadow mask, labels; no echoes)
  load       reading the written case back (PNG decode, JSON, validation checks)

example:
  python benchmarks/bench_simulator.py --cases 40 --size 256 256
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # one core, before numpy loads
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fetal_biometry import simulator  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402


def _rates(count: int, runs: dict) -> dict:
    """Scans per second of each run over cases 0 .. count-1, interleaved case by case so a
    busy machine slows them alike and their ratios hold."""
    spent = dict.fromkeys(runs, 0.0)
    for index in range(count):
        for name, run in runs.items():
            start = time.perf_counter()
            run(index)
            spent[name] += time.perf_counter() - start
    return {name: count / seconds for name, seconds in spent.items()}


def _simulate(seed: int, shape: tuple[int, int], probe: str, appearance: simulator.Appearance,
              plane: str = "abdomen"):
    return lambda i: simulator.simulate_case(seed, i, shape, probe, appearance=appearance, plane=plane)


def _labels_only(seed: int, index: int, shape: tuple[int, int], probe: str) -> None:
    scene = simulator.draw_scene(np.random.default_rng([seed, index]), shape, probe)
    simulator.ground_truth(scene, shape, simulator.beam_grid(scene))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40, help="cases per measurement (default 40)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="image size (default 256 256)")
    parser.add_argument("--probe", choices=simulator.PROBES, default="convex")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    shape = tuple(args.size)
    simulator.simulate_case(args.seed, 0, shape, args.probe)  # warm up imports and caches
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp, "data")
        dataset.write_dataset(out, simulator.simulate(args.cases, args.seed, shape, args.probe))
        data = dataset.open(out)
        rate = _rates(args.cases, {
            "training": _simulate(args.seed, shape, args.probe, simulator.TRAINING),
            "narrow": _simulate(args.seed, shape, args.probe, simulator.NARROW),
            "foreign": _simulate(args.seed, shape, args.probe, simulator.FOREIGN),
            "head": _simulate(args.seed, shape, args.probe, simulator.TRAINING, "head"),
            "femur": _simulate(args.seed, shape, args.probe, simulator.TRAINING, "femur"),
            "labels": lambda i: _labels_only(args.seed, i, shape, args.probe),
            "load": lambda i: data.read(data.cases[i])})
    full, narrow, foreign, labels, load = (rate[k] for k in ("training", "narrow", "foreign", "labels", "load"))
    print(f"{args.cases} {args.probe} cases of {shape[1]}x{shape[0]} px, one core:")
    print(f"  simulate  {full:7.1f} scans/s  ({1000 / full:6.1f} ms per scan; training ranges)")
    print(f"  narrow    {narrow:7.1f} scans/s  (training ranges cost {narrow / full:.2f} narrow scans)")
    print(f"  foreign   {foreign:7.1f} scans/s  (foreign ranges cost {narrow / foreign:.2f} narrow scans)")
    print(f"  head      {rate['head']:7.1f} scans/s  (a head costs {full / rate['head']:.2f} abdomen scans)")
    print(f"  femur     {rate['femur']:7.1f} scans/s  (a femur costs {full / rate['femur']:.2f} abdomen scans)")
    print(f"  labels    {labels:7.1f} scans/s  (physics takes {1 - full / labels:.0%} of a scan)")
    print(f"  load      {load:7.1f} scans/s  (simulating costs {load / full:.1f} loads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
