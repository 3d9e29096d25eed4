#!/usr/bin/env python3
"""Evaluate trained patch classifiers on held-out scans: class maps, AC and plane acceptance.

For each model, every case of DATASET is classified densely and measured against its ground
truth: pixel and per-class accuracy with the confusion matrix (inside the fan), median AC error
in mm and percent, plane-acceptance accuracy. Prints the ablation table (markdown); writes
OUT/table.md, OUT/summary.json, OUT/ENCODING.json (per case), overlays of the worst and a few
typical cases, the figures as PNGs (bland_altman_ENCODING.png, ...) and OUT/report.html, one
page with all of it (open it in a browser; it needs no network).

Models default to the newest snapshot of each encoding trained by `make demo` or tools/train.py
(runs/fetal_ENCODING/snapshots/); name others with --model ENCODING=WEIGHTS.

example:
  python tools/evaluate.py data/fetal/heldout --out runs/evaluation
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import dataset, evaluation, patches, training  # noqa: E402


def models(specs: list[str]) -> list[evaluation.Model]:
    chosen = {}
    for spec in specs or []:
        encoding, _, weights = spec.partition("=")
        if encoding not in patches.ENCODINGS or not weights:
            raise ValueError(f"--model {spec!r}: give ENCODING=WEIGHTS with ENCODING one of {patches.ENCODINGS}")
        chosen[encoding] = pathlib.Path(weights)
    if not chosen:
        for encoding in patches.ENCODINGS:
            state = training.latest_snapshot(ROOT / f"runs/fetal_{encoding}")
            if state is not None:
                chosen[encoding] = state.with_suffix(".caffemodel")
    if not chosen:
        raise ValueError("no trained model found in runs/fetal_*/snapshots; run `make demo` or pass --model")
    return [evaluation.Model(e, ROOT / f"prototxt/fetal_{e}/deploy.prototxt", w) for e, w in chosen.items()]


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="held-out dataset folder (never used in training)")
    parser.add_argument("--out", default="runs/evaluation", help="output folder (default runs/evaluation)")
    parser.add_argument("--model", action="append", metavar="ENCODING=WEIGHTS",
                        help="a trained classifier; repeat for several encodings")
    parser.add_argument("--overlays", type=int, default=4,
                        help="overlays per model of the largest AC errors, and as many more of "
                             "wrong plane verdicts, beside 2 typical cases (default 4)")
    args = parser.parse_args(argv)
    try:
        summaries = {m.encoding: evaluation.evaluate(m, args.dataset, args.out,
                                                     lambda it, desc: tqdm(it, desc=desc), args.overlays)
                     for m in models(args.model)}
    except (ValueError, OSError, dataset.DatasetError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 1
    print(evaluation.write_report(summaries, args.out))
    print(f"report: {pathlib.Path(args.out, 'report.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
