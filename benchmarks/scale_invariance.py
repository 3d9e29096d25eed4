#!/usr/bin/env python3
"""Scale invariance: one model on the same held-out anatomy at three pixel densities.

The held-out simulated scans (seed 1, as in `make demo`) are rendered at x0.5, x1 and x2 the
pixels (128, 256 and 512 px square: the same anatomy, the spacing halving as the pixels
double) and classified by one model folder two ways: resampled to the model's spacing (how
tools/infer.py and tools/evaluate.py work now) and on the scans' own pixels (what the nets
did before target spacings, the baseline). Per-class accuracy, median and 90th-percentile AC
error and plane acceptance are printed side by side; the goal is every figure of the
resampled rows within 3 points (accuracies) and 0.5 % (AC errors) of its x1 row.

    python benchmarks/scale_invariance.py [--model runs/fetal_channels] [--cases 30]

Datasets are cached under data/fetal/scale/ (simulating 30 scans at 512 px takes ~30 s).
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from fetal_biometry import paths, simulator  # noqa: E402
from fetal_biometry.evaluation import scans as evaluation  # noqa: E402
from fetal_biometry.nets import model as model_folder  # noqa: E402

DENSITIES = (0.5, 1.0, 2.0)
GOAL_POINTS, GOAL_AC = 0.03, 0.5
COLUMNS = ("pixel_accuracy", "amniotic_fluid", "stomach_bubble", "umbilical_vein", "shadow",
           "background", "ac_median_error_percent", "ac_p90_error_percent",
           "plane_acceptance_accuracy")


def _figures(summary: dict) -> dict:
    values = {**summary, **summary["per_class_accuracy"]}
    return {c: values[c] for c in COLUMNS}


def _dataset(density: float, cases: int) -> pathlib.Path:
    side = int(round(256 * density))
    path = ROOT / paths.FETAL / "scale" / f"heldout_{side}px_{cases}"
    if not (path / "dataset.json").is_file():
        simulator.write(path, cases, seed=1, shape=(side, side), probe="mixed",
                        progress=functools.partial(tqdm, total=cases, desc=f"simulate {side} px"))
    return path


def _misses(rows: dict[str, dict]) -> list[str]:
    """Figures of the resampled rows farther from the x1 row than the goal allows."""
    reference, found = rows["x1 resampled"], []
    for name, row in rows.items():
        if not name.endswith("resampled"):
            continue
        for column, value in row.items():
            if value is None or reference[column] is None:
                continue
            limit = GOAL_AC if column.startswith("ac_") else GOAL_POINTS
            if abs(value - reference[column]) > limit:
                found.append(f"{name} {column}: {value:.3f} vs {reference[column]:.3f}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / paths.run_dir("fetal_channels"),
                        help="model folder (default runs/fetal_channels from make demo)")
    parser.add_argument("--cases", type=int, default=30, help="held-out scans (default 30)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / paths.RUNS / "scale_invariance.json")
    args = parser.parse_args(argv)
    model = model_folder.load(args.model)
    rows, start = {}, time.perf_counter()
    for density in DENSITIES:
        data = _dataset(density, args.cases)
        for resampled in (True, False):
            summary = evaluation.evaluate(model, data, at_model_spacing=resampled,
                                          progress=lambda it, desc: tqdm(it, desc=f"x{density:g}"))
            rows[f"x{density:g} {'resampled' if resampled else 'native pixels'}"] = _figures(summary)
    print(f"model {model.root} ({model.encoding}, {model.spacing_mm:.3f} mm/px, patch "
          f"{model.patch} px); {args.cases} held-out scans per density; "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| scans | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 1))
    for name, row in rows.items():
        cells = ["-" if v is None else f"{v:.3f}" if not k.startswith("ac_") else f"{v:.2f} %"
                 for k, v in row.items()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    misses = _misses(rows)
    print("\ngoal (resampled rows within 3 points and 0.5 % of x1): "
          + ("met" if not misses else "missed by " + "; ".join(misses)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(model.root), "rows": rows, "misses": misses}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
