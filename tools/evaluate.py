#!/usr/bin/env python3
"""Evaluate trained models on held-out scans: class maps, AC and plane acceptance.

For each model, every case of DATASET is classified densely and measured against its ground
truth: pixel and per-class accuracy with the confusion matrix (inside the fan), median AC error
in mm and percent, plane-acceptance accuracy. Prints the ablation table (markdown); writes
OUT/table.md, OUT/summary.json, OUT/MODEL.json (per case), overlays of the worst and a few
typical cases, the figures as PNGs (bland_altman_MODEL.png, ...) and OUT/report.html, one
page with all of it (open it in a browser; it needs no network).

Models are model folders (made by tools/train.py: model.json, deploy.prototxt, weights) of either
kind, patch classifier or segmenter (a segmenter's maps are compared on all eight dataset classes,
its abdomen region scored by Dice, its AC measured from the abdomen it outlines); each scan is
classified at its model's spacing. They default to the folders `make demo` trains
(runs/fetal_rotate, runs/fetal_channels, runs/fetal_none, runs/segmenter_channels, those that
exist); name others with --model DIR.

A dataset of head, femur or mixed planes (tools/simulate.py --plane mixed, or heads imported from
HC18's layout) is evaluated per structure instead, for segmenters of the head and femur
(make_segment_records.py --classes panel; fetal_biometry/evaluation/panel.py): plane type
accuracy, HC, OFD, BPD (outer-to-outer, outer-to-inner) errors in mm and percent, cephalic index,
FL in mm, AC, the share of acceptable planes measured and of unfit planes measured as fit, each
against the issue's goal; OUT/panel_table.md, OUT/panel_summary.json, OUT/MODEL.json (per case)
and OUT/MODEL_maps.npz. Heads imported from HC18's layout also get HC18's HC error line.

A folder of sweeps (tools/simulate.py --sweeps) is evaluated with the metrics of ACOUSLIC-AI
instead: per model the weighted frame selection score (WFSS), the normalised AC error (NAE),
the abdomen Dice on the chosen frame and the score 0.5 (1 - NAE) + 0.25 Dice + 0.25 WFSS, in
OUT/sweep_table.md, OUT/sweep_summary.json and OUT/MODEL_sweeps.json (per sweep).

example:
  python tools/evaluate.py data/fetal/heldout --out runs/evaluation
  python tools/evaluate.py data/fetal/sweeps --out runs/evaluation
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli, paths  # noqa: E402
from fetal_biometry.evaluation import panel, scans as evaluation, sweeps as sweep  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402
from fetal_biometry.simulator import sweeps as sweep_simulator  # noqa: E402


def _panel(models, data, out, backend: str) -> str:
    """Evaluate panel segmenters on head, femur or mixed planes; write OUT/panel_table.md and
    OUT/panel_summary.json; the tables."""
    import json

    from tqdm import tqdm

    summaries = {m.name: panel.evaluate(m, data, out, lambda it, desc: tqdm(it, desc=desc), backend)
                 for m in models}
    heads = dataset.open(data).structures() == {"head"}
    text = "\n\n".join(f"## {name}\n\n{panel.table(s)}" + (f"\n\n{panel.hc18_table(s)}" if heads else "")
                       for name, s in summaries.items())
    atomic.write_text(pathlib.Path(out, "panel_summary.json"), json.dumps(summaries, indent=1) + "\n")
    atomic.write_text(pathlib.Path(out, "panel_table.md"), text + "\n")
    return text


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="held-out dataset folder (never used in training)")
    parser.add_argument("--out", default="runs/evaluation", help="output folder (default runs/evaluation)")
    parser.add_argument("--model", action="append", metavar="DIR",
                        help="a model folder; repeat for several (the ablation)")
    parser.add_argument("--overlays", type=int, default=4,
                        help="overlays per model of the largest AC errors, and as many more of "
                             "wrong plane verdicts, beside 2 typical cases (default 4)")
    cli.add_inference_options(parser)
    args = parser.parse_args(argv)
    try:
        cli.inference_setup(args)
        models = cli.models(args.model, paths.root())
        # A folder of the user's, or another tool's, is never written into; this tool's own
        # folder gathers the results of several runs (one model's files replaced by its next).
        for path in atomic.claim_output(args.out, evaluation.TOOL, [args.dataset, *(m.root for m in models)],
                                        overwrite=True, option="--out"):
            print(f"evaluate: removed {path}, left by an interrupted run", file=sys.stderr)
        atomic.mark(args.out, evaluation.TOOL)
        if sweep_simulator.is_sweeps(args.dataset):  # sweeps: the benchmark's metrics
            summaries = {m.name: sweep.evaluate(m, args.dataset, args.out,
                                                lambda it, desc: tqdm(it, desc=desc), args.backend)
                         for m in models}
            print(sweep.write_report(summaries, args.out))
            return 0
        if dataset.open(args.dataset).structures() != {"abdomen"}:  # head or femur planes: per structure
            print(_panel(models, args.dataset, args.out, args.backend))
            return 0
        summaries = {m.name: evaluation.evaluate(m, args.dataset, args.out,
                                                     lambda it, desc: tqdm(it, desc=desc), args.overlays,
                                                     backend=args.backend)
                     for m in models}
    except (ValueError, OSError, dataset.DatasetError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 1
    print(evaluation.write_report(summaries, args.out))
    print(f"report: {pathlib.Path(args.out, 'report.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
