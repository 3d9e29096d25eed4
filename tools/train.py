#!/usr/bin/env python3
"""Train a Caffe solver with pycaffe: progress, validation, snapshots, resume, plots.

Writes into OUT: solver.prototxt (as run), metrics.jsonl (per iteration and per validation:
loss, learning rate, accuracy, per-class accuracy, confusion matrix), training.png, and
snapshots/NAME_iter_N.{caffemodel,solverstate}. Ctrl-C (or SIGTERM) snapshots and stops; run
again with --resume to continue exactly where it stopped (a run folder copied or moved
elsewhere resumes from its own weights). An OUT that holds an earlier run needs --resume
(continue) or --overwrite (start afresh); a folder of other files is never written into.
Training stops with an error naming the last good snapshot when it diverges (NaN loss, the
loss staying far above its lowest, validation accuracy at chance after warm-up) or when the
disk is full. Run from the repository root: the checked-in prototxt name their LMDBs relative
to it.

examples:
  python tools/train.py prototxt/tutorial_cnn/solver.prototxt --out runs/tutorial_cnn
  python tools/train.py prototxt/tutorial_cnn/solver.prototxt --out runs/tutorial_cnn --resume last
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import caffe_env  # noqa: E402
from fetal_biometry.nets import training  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solver", help="solver prototxt (see prototxt/)")
    parser.add_argument("--out", required=True, help="output folder (metrics, plots, snapshots)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU device id (default: CPU)")
    parser.add_argument("--max-iter", type=int, help="override the solver's max_iter")
    parser.add_argument("--validate-every", type=int,
                        help="validation interval in iterations (default: the solver's test_interval; 0: only at the end)")
    parser.add_argument("--snapshot-every", type=int,
                        help="snapshot interval (default: the solver's snapshot; 0: only at the end)")
    parser.add_argument("--resume", help="a .solverstate to continue from, or 'last' for the newest in OUT")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the earlier run in OUT and train afresh")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        resume = training.last_state(args.out) if args.resume == "last" else args.resume
        if args.gpu is not None:
            caffe_env.check_device(args.gpu)  # before OUT is made: no CUDA, no device, no output
        result = training.train(args.solver, args.out, gpu=args.gpu, max_iter=args.max_iter,
                                validate_every=args.validate_every,
                                snapshot_every=args.snapshot_every, resume=resume,
                                overwrite=args.overwrite, progress=not args.no_progress)
    except (training.TrainingError, RuntimeError, ImportError, ValueError) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 1
    print(f"{result.status} after {result.iterations} iterations; snapshot {result.snapshot}")
    return 130 if result.status == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
