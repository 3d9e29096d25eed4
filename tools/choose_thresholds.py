#!/usr/bin/env python3
"""Choose the AC trust limits and the plane thresholds of fetal_biometry.measure.biometry on validation scans.

Every case of each VALIDATION_DATASET is classified by each --model and measured under the
loosest trust limits; the limits are then chosen so that no measured AC is off by more than
10 % and the 90th percentile of the errors stays within 5 %, measuring as many cases as
possible, and the plane thresholds (too elongated an abdomen, an umbilical vein at the skin
line) where the plane verdicts agree best with the truth (fetal_biometry.measure.thresholds has the
rule). Prints the chosen values, what each limit costs (cases no longer measured) and buys (the
errors it removes), and the measured ACs before and after per model and dataset. It never
writes fetal_biometry/measure/biometry.py: copy the values into its constants, with this command.

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

from fetal_biometry import atomic, cli, paths  # noqa: E402
from fetal_biometry.evaluation import scans as evaluation  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402
from fetal_biometry.measure import thresholds  # noqa: E402

TOOL = "choose_thresholds"


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
        loaded = cli.models(args.model, paths.root())
        if args.out:  # before the work: an input, or a file of the user's, is never replaced
            atomic.claim_file(args.out, TOOL, [*args.datasets, *(m.root for m in loaded)], "--out")
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
    text = thresholds.report(choice, groups)
    print("trust limits and plane thresholds (fetal_biometry.measure.biometry):")
    print(thresholds.constants(choice))
    print()
    print(text)
    if args.out:
        record = {"output_of": atomic.signature(TOOL), "limits": choice.limits, "thresholds": choice.thresholds,
                  "steps": choice.steps, "datasets": args.datasets,
                  "models": [str(m.root) for m in loaded], "table": text, "cases": groups}
        atomic.write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
