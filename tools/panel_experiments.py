#!/usr/bin/env python3
"""The panel experiments: a mixed-plane segmenter (abdomen, head, femur, unfit planes among them)
trained with three seeds and evaluated per structure on simulated held-out planes.

Simulates its datasets under data/experiments/panel/ (pool 120 mixed planes; validation 60;
held-out 90, a quarter of each kind unfit; 20 heads in HC18's layout, imported), then for each
seed makes the pool's records of the class table 'panel', trains the segmenter (U-Net width 8,
1500 iterations, about 5.5 minutes of one core) and evaluates it on each set
(fetal_biometry/evaluation/panel.py), in runs/experiments/panel/seed<S>/. What is complete is
reused and an interrupted training resumes: run it again to continue. Prints the held-out table
(mean ± sd over seeds, each goal of issue #26 met or its distance), the validation table and the
HC18 line, and writes them to runs/experiments/panel/tables.md.

example:
  nice -n 10 python tools/panel_experiments.py
  python tools/panel_experiments.py --seeds 0 --sets validation
"""
import argparse
import dataclasses
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli  # noqa: E402
from fetal_biometry.experiments import panel  # noqa: E402


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=cli.seed, nargs="+", default=list(panel.SEEDS), metavar="S",
                        help="training seeds (default 0 1 2)")
    parser.add_argument("--sets", nargs="+", default=list(panel.EVALUATION_SETS),
                        choices=panel.EVALUATION_SETS, help="evaluation sets (default all)")
    parser.add_argument("--iterations", type=cli.at_least_one, default=panel.RECIPE.iterations, metavar="N",
                        help=f"training iterations (default {panel.RECIPE.iterations}; a longer run "
                             "resumes the shorter one's last snapshot)")
    args = parser.parse_args(argv)  # every argument checked here, before anything is simulated
    try:
        recipe = dataclasses.replace(panel.RECIPE, iterations=args.iterations)
        records = panel.run(args.seeds, args.sets, recipe=recipe, progress=lambda it, desc, total=None: tqdm(
            it, desc=desc, total=total, leave=False))
    except (ValueError, OSError, RuntimeError) as err:
        print(f"panel_experiments: error: {err}", file=sys.stderr)
        return 1
    parts = [f"## {name}\n\n{panel.table(records, name)}" for name in args.sets if name != "hc18"]
    if "hc18" in args.sets:
        parts.append(f"## hc18\n\n{panel.hc18_table(records)}")
    text = "\n\n".join(parts)
    atomic.write_text(panel.runs_root() / "tables.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
