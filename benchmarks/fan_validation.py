#!/usr/bin/env python3
"""How often fan.estimate_geometry finds the fan of simulated scans, and how close it comes.

Scans of each appearance preset (narrow: the first round's; training: the widened ranges;
foreign: outside them) are simulated at each size on a validation seed (2 or 4; never the
held-out seed 1) and their probe geometry is estimated from the image alone. Per preset and
size it prints: fans found (confidence >= fan.MIN_CONFIDENCE; the others raise FanNotFound),
how many of those are wrong (an edge angle off by more than 3 degrees, the apex by more than
10 % of the image side, or the end depth by more than 5 %: a confident wrong geometry is
worse than none), the mean absolute errors of the found convex fans (worst edge angle,
apex distance, start and end depth; for linear probes: angle, origin of the face, width and
depth range) and their mean confidence.

example:
  python benchmarks/fan_validation.py --cases 30 --seed 2 --sizes 128 256 --probe convex
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, before numpy loads
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fetal_biometry import simulator  # noqa: E402
from fetal_biometry.geometry import fan, probe as geom  # noqa: E402

HELD_OUT_SEED = 1


def errors(found: geom.Geometry, truth: geom.Geometry) -> tuple[float, float, float, float] | None:
    """Absolute errors of ``found`` against ``truth`` (pixels, degrees), None if the probe
    type differs: convex (worst edge angle, apex, start depth, end depth); linear (angle,
    the face's origin at the top of the strip, width, depth range), as tests/geometry/test_fan.py
    compares them."""
    if type(found) is not type(truth):
        return None
    if isinstance(truth, geom.ConvexProbe):
        return (float(np.abs(np.subtract(found.angles, truth.angles)).max()),
                float(np.hypot(*np.subtract(found.apex, truth.apex))),
                abs(found.start_depth - truth.start_depth), abs(found.end_depth - truth.end_depth))
    face = geom.beam_to_image(truth, truth.start_depth, 0.0)
    return (abs(found.angle - truth.angle), float(np.hypot(*np.subtract(found.origin, face))),
            abs(found.width - truth.width),
            abs((found.end_depth - found.start_depth) - (truth.end_depth - truth.start_depth)))


def _wrong(error: tuple | None, size: int) -> bool:
    return error is None or error[0] > 3 or error[1] > 0.1 * size or error[3] > 0.05 * size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=30, help="scans per preset and size (default 30)")
    parser.add_argument("--seed", type=int, default=2, help="validation seed (default 2; not 1, held out)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], metavar="PX",
                        help="square image sizes (default 128 256)")
    parser.add_argument("--presets", nargs="+", choices=tuple(simulator.PRESETS),
                        default=list(simulator.PRESETS), help="appearance presets (default all)")
    parser.add_argument("--probe", choices=simulator.PROBES, default="convex",
                        help="probe type of the scans (default convex)")
    parser.add_argument("--verbose", action="store_true", help="also list the misses and wrong fans")
    args = parser.parse_args(argv)
    if args.seed == HELD_OUT_SEED:
        parser.error(f"seed {HELD_OUT_SEED} is the held-out seed: choose settings on 2 or 4")
    print(f"seed {args.seed}, {args.cases} {args.probe} scans per row; "
          "errors: mean absolute, of the found fans")
    print(f"{'preset':9s} {'px':>4s} {'found':>6s} {'wrong':>5s} {'angle°':>7s} {'apex':>6s} "
          f"{'start':>6s} {'end':>6s} {'conf':>5s}")
    for size in args.sizes:
        for preset in args.presets:
            found, wrong, confidences, notes = [], 0, [], []
            cases = simulator.simulate(args.cases, args.seed, (size, size), args.probe,
                                       appearance=simulator.PRESETS[preset])
            for case in cases:
                try:
                    estimate, confidence = fan.estimate_geometry(case.image)
                except fan.FanNotFound as error:
                    notes.append(f"  {case.name} not found: {error}")
                    continue
                error = errors(estimate, case.geometry)
                confidences.append(confidence)
                if _wrong(error, size):
                    wrong += 1
                    notes.append(f"  {case.name} wrong (confidence {confidence:.2f}): {error}")
                if error is not None:
                    found.append(error)
            mean = np.mean(found, axis=0) if found else np.full(4, np.nan)
            print(f"{preset:9s} {size:4d} {len(confidences):3d}/{args.cases:<2d} {wrong:5d} "
                  f"{mean[0]:7.2f} {mean[1]:6.2f} {mean[2]:6.2f} {mean[3]:6.2f} "
                  f"{np.mean(confidences) if confidences else np.nan:5.2f}")
            if args.verbose:
                print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
