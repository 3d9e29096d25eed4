#!/usr/bin/env python3
"""Choose the AC trust limits and the plane thresholds of fetal_biometry.biometry on validation scans.

Every case of each VALIDATION_DATASET is classified by each --model and measured under the
loosest trust limits; the limits are then chosen so that no measured AC is off by more than
10 % and the 90th percentile of the errors stays within 5 %, measuring as many cases as
possible, and the plane thresholds (too elongated an abdomen, an umbilical vein at the skin
line) where the plane verdicts agree best with the truth (fetal_biometry.thresholds has the
rule). Prints the chosen values, what each limit costs (cases no longer measured) and buys (the
errors it removes), and the measured ACs before and after per model and dataset. It never
writes fetal_biometry/biometry.py: copy the values into its constants, with this command.

Use validation data only, never the held-out set you report on (the simulator's held-out seed
is 1; seed 2 is the validation seed).

example:
  python tools/simulate.py --cases 30 --out data/fetal/val --seed 2 --probe mixed
  python tools/choose_thresholds.py data/fetal/val --model runs/fetal_channels \\
      --model runs/fetal_rotate --model runs/fetal_none --out runs/thresholds.json
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, biometry, cli, dataset, evaluation, thresholds  # noqa: E402


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1f} %"


def report(choice: thresholds.Choice, groups: dict[str, list[dict]]) -> str:
    """The chosen values, the cost of each limit and the outcome per group, as markdown."""
    pooled = [r for results in groups.values() for r in results]
    lines = ["| trust rule | chosen | loosest | ACs it stops measuring | of them off > 10 % | > 5 % |",
             "|" + " --- |" * 6]
    for row in thresholds.costs(pooled, choice.limits):
        lines.append(f"| {row['rule']} | {row['limit']:.3f} | {row['loosest']:g} | "
                     f"{row['not_measured']} | {row['off_10']} | {row['off_5']} |")
    lines += ["", "| plane threshold | chosen |", "| --- | --- |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in choice.thresholds.items()]
    lines += ["", "| models, dataset | measured (loosest) | median | 90th pct. | max | > 10 % "
              "| measured (chosen) | median | 90th pct. | max | > 10 % |", "|" + " --- |" * 11]
    for name, results in {**groups, "all": pooled}.items():
        cells = []
        for limits in (thresholds.LOOSEST, choice.limits):
            o = thresholds.outcome(results, limits)
            cells += [f"{o['measured']}/{o['cases']}", _percent(o["median"]), _percent(o["p90"]),
                      _percent(o["max"]), str(o["off_10"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", metavar="VALIDATION_DATASET",
                        help="validation dataset folder(s), never the held-out set")
    parser.add_argument("--model", action="append", metavar="DIR",
                        help="a model folder; repeat for several (default: runs/fetal_*)")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the choice, the steps and the per-case results as JSON")
    args = parser.parse_args(argv)
    try:
        loaded = cli.models(args.model, ROOT)
        groups = {}
        for data in args.datasets:
            opened = dataset.open(data)
            for model in loaded:
                results, _ = evaluation.case_results(model, opened,
                                                     lambda it, desc: tqdm(it, desc=desc),
                                                     limits=thresholds.LOOSEST)
                groups[f"{model.name}, {data}"] = results
    except (ValueError, OSError, dataset.DatasetError) as err:
        print(f"choose_thresholds: error: {err}", file=sys.stderr)
        return 1
    choice = thresholds.choose([r for results in groups.values() for r in results])
    text = report(choice, groups)
    print("trust limits (fetal_biometry.biometry):")
    for rule in biometry.TRUST_RULES:
        print(f"  {rule.constant} = {choice.limits[rule.field]:.3f}")
    for name, value in choice.thresholds.items():
        print(f"  {name} = {value:.3f}")
    print()
    print(text)
    if args.out:
        record = {"limits": choice.limits, "thresholds": choice.thresholds,
                  "steps": choice.steps, "datasets": args.datasets,
                  "models": [str(m.root) for m in loaded], "table": text, "cases": groups}
        atomic.write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
