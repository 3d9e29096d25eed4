#!/usr/bin/env python3
"""Evaluate trained patch classifiers on held-out scans: class maps, AC and plane acceptance.

For each model, every case of DATASET is classified densely and measured against its ground
truth: pixel and per-class accuracy with the confusion matrix (inside the fan), median AC error
in mm and percent, plane-acceptance accuracy. Prints the ablation table (markdown); writes
OUT/table.md, OUT/summary.json, OUT/ENCODING.json (per case) and a few overlays.

Models are model folders (made by tools/train.py: model.json, deploy.prototxt, weights); each
scan is classified at its model's spacing. They default to the folders `make demo` trains
(runs/fetal_rotate, runs/fetal_channels, runs/fetal_none); name others with --model DIR.

example:
  python tools/evaluate.py data/fetal/heldout --out runs/evaluation
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import dataset, evaluation, model as model_folder, paths  # noqa: E402


def models(folders: list[str] | None) -> list[model_folder.Model]:
    """The model folders named, or those `make demo` trains when there are any."""
    if not folders:
        folders = [p for p in paths.demo_models(ROOT) if (p / model_folder.FILE).is_file()]
        if not folders:
            raise ValueError("no model folder found in runs/fetal_*; run `make demo` or pass --model DIR")
    loaded = [model_folder.load(folder) for folder in folders]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"two models would share a name in the results: {names}; rename a folder")
    return loaded


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="held-out dataset folder (never used in training)")
    parser.add_argument("--out", default="runs/evaluation", help="output folder (default runs/evaluation)")
    parser.add_argument("--model", action="append", metavar="DIR",
                        help="a model folder; repeat for several (the ablation)")
    parser.add_argument("--overlays", type=int, default=4, help="overlay PNGs per model (default 4)")
    args = parser.parse_args(argv)
    try:
        summaries = {m.name: evaluation.evaluate(m, args.dataset, args.out,
                                                     lambda it, desc: tqdm(it, desc=desc), args.overlays)
                     for m in models(args.model)}
    except (ValueError, OSError, dataset.DatasetError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 1
    print(evaluation.write_report(summaries, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
