#!/usr/bin/env python3
"""Driver overhead: the same solver, the same iterations, pycaffe driver vs the `caffe train` binary.

Both runs train the tutorial CNN on MNIST with Adam, validate on the same schedule and snapshot
at the end; each is timed end to end as a separate process (start-up, pre-checks, progress bar,
validation and snapshot included). Prints seconds per iteration of each and their ratio.

    python benchmarks/bench_training.py [--iterations 500] [--validate-every 250]
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry.caffe_env import binary, proto  # noqa: E402
from fetal_biometry.experiments import demo  # noqa: E402
from fetal_biometry.nets import solvers, training  # noqa: E402

SOLVER = "prototxt/tutorial_cnn/solver.prototxt"


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--validate-every", type=int, default=250)
    args = parser.parse_args()
    os.chdir(ROOT)
    demo.mnist_lmdbs()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-training-"))
    param = training.read_prototxt(SOLVER, proto().SolverParameter)
    param.max_iter, param.test_interval = args.iterations, args.validate_every
    param.snapshot, param.snapshot_prefix, param.display = 0, str(work / "binary/net"), 100
    (work / "binary").mkdir()
    solver_path = solvers.save(param, work / "solver.prototxt")
    quiet = {**os.environ, "GLOG_minloglevel": "1"}
    binary_s = timed([binary("caffe"), "train", f"--solver={solver_path}"], env=quiet,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver_s = timed([sys.executable, "tools/train.py", str(solver_path), "--out",
                      str(work / "driver"), "--snapshot-every", "0"], env=quiet,
                     stdout=subprocess.DEVNULL)
    n = args.iterations
    print(f"caffe train : {binary_s:7.1f} s  {1000 * binary_s / n:6.1f} ms/iteration")
    print(f"tools/train : {driver_s:7.1f} s  {1000 * driver_s / n:6.1f} ms/iteration")
    print(f"ratio driver/binary: {driver_s / binary_s:.3f} ({n} iterations, validation every "
          f"{args.validate_every}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
