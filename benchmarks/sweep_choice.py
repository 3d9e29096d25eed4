#!/usr/bin/env python3
"""Choose the segmenter's frame-choice settings on validation sweeps: stride and smoothing.

Every sweep of SWEEPS (the layout of fetal_biometry.simulator.sweeps; a validation seed, never a
held-out or foreign set) is analysed with MODEL_DIR (a segmenter) for each first-pass stride and
smoothing window (and, with --classes-off, without the heart, lung and kidney classes in the
frame score), and the mean WFSS, NAE and the thorax frames chosen are printed as a markdown table. The settings go into fetal_biometry.measure.sweeps (STRIDE, SMOOTHING).

example:
  python benchmarks/sweep_choice.py runs/segmenter_beam data/sweeps_val --backend opencv
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry.evaluation import sweeps as evaluation  # noqa: E402
from fetal_biometry.inference.dense import engine  # noqa: E402
from fetal_biometry.measure import sweeps  # noqa: E402
from fetal_biometry.nets import model as model_folder  # noqa: E402
from fetal_biometry.simulator import sweeps as sweep_simulator  # noqa: E402

WINDOWS = {"none": (1.0,), "3 (1/4 1/2 1/4)": (0.25, 0.5, 0.25), "5 (1 2 3 2 1)": (1, 2, 3, 2, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL_DIR")
    parser.add_argument("sweeps", metavar="SWEEPS")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--backend", choices=("caffe", "opencv"), default="opencv")
    parser.add_argument("--windows", nargs="+", choices=tuple(WINDOWS), default=list(WINDOWS))
    parser.add_argument("--classes-off", action="store_true",
                        help="also each setting with the wrong-level classes left out of the score")
    args = parser.parse_args()
    segmenter = engine(model_folder.load(args.model), backend=args.backend)
    folders = sweep_simulator.open_sweeps(args.sweeps)
    print("| stride | smoothing | heart, lung, kidney in the score | WFSS | NAE | "
          "optimal / suboptimal / irrelevant / none | thorax chosen |")
    print("|---|---|---|---|---|---|---|")
    for stride in args.strides:
        for name in args.windows:
            for wrong_level in (sweeps.WRONG_LEVEL, ()) if args.classes_off else (sweeps.WRONG_LEVEL,):
                results = [evaluation.evaluate_sweep(segmenter, f, stride=stride, smoothing=WINDOWS[name],
                                                     wrong_level=wrong_level) for f in folders]
                s = evaluation.summarize(results)
                counts = " / ".join(str(s["chosen"].get(k, 0)) for k in ("optimal", "suboptimal", "irrelevant", "none"))
                print(f"| {stride} | {name} | {'yes' if wrong_level else 'no'} | {s['wfss']:.3f} | {s['nae']:.4f} | "
                      f"{counts} | {s['thorax']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
