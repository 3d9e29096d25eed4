#!/usr/bin/env python3
"""Head and femur measurement on simulated *truth* maps: how close the code comes to the exact truth.

The label maps are the simulator's own (what a perfect segmenter would give), so this checks
the measurement code alone, not a net: HC, OFD, BPD (outer-to-outer, outer-to-inner) and the
cephalic index of transthalamic heads, FL of femurs, against the exact values in the case
records, and the plane verdicts (transcerebellar and oblique heads, foreshortened femurs)
against the truth.

example:
  python benchmarks/head_femur_truth.py --cases 40 --seeds 1 2 3
"""
import argparse
import os
import pathlib
import sys

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # one core, before numpy loads
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fetal_biometry.measure import femur, head  # noqa: E402
from fetal_biometry.simulator import cases, planes  # noqa: E402


def _stats(values: list[float]) -> str:
    v = np.abs(values)
    return f"median {np.median(v):.2f}, 90th pct {np.percentile(v, 90):.2f}, max {v.max():.2f} (n={len(v)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40, help="cases per plane and seed (default 40)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    args = parser.parse_args()
    errors = {k: [] for k in ("HC", "OFD", "BPD_OO", "BPD_OI")}
    ci, fl, verdicts = [], [], {}
    for seed in args.seeds:
        for i in range(args.cases):
            c = cases.simulate_case(seed, i, (args.size, args.size), "mixed", 0.3, plane="head")
            m = head.measure(c.labels, c.spacing_mm, c.geometry)
            truth = c.biometry.measurements
            kind = c.biometry.plane_reason.split(":")[0]
            verdicts.setdefault(("head", kind), []).append(m.accepted)
            if c.biometry.plane_reason == planes.HEAD_ACCEPTABLE:
                for key, value in m.as_measurements().items():
                    errors[key].append(100 * (value - truth[key]) / truth[key])
                if m.cephalic_index is not None:
                    ci.append(m.cephalic_index - truth["BPD_OO"] / truth["OFD"])
                verdicts.setdefault(("head", "measured"), []).append(m.hc_mm is not None)
            c = cases.simulate_case(seed, i, (args.size, args.size), "mixed", 0.3, plane="femur")
            m = femur.measure(c.labels, c.spacing_mm, c.geometry)
            kind = c.biometry.plane_reason.split(":")[0]
            verdicts.setdefault(("femur", kind), []).append(m.accepted)
            if c.biometry.plane_acceptable and m.fl_mm is not None:
                fl.append(m.fl_mm - c.biometry.measurements["FL"])
    print(f"truth maps, {args.size} px, seeds {args.seeds}, {args.cases} cases per plane and seed")
    for key, values in errors.items():
        print(f"  {key:7s} abs error %: {_stats(values)}")
    print(f"  CI      abs error: {_stats(ci)}")
    print(f"  FL      abs error mm: {_stats(fl)}")
    for (plane, kind), accepted in sorted(verdicts.items()):
        label = "measured" if kind == "measured" else "accepted"
        print(f"  {plane} {kind}: {label} {sum(accepted)} of {len(accepted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
