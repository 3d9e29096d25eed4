#!/usr/bin/env python3
"""Regenerate every checked-in prototxt under prototxt/ from fetal_biometry.catalog.

Nets come from caffe.NetSpec (fetal_biometry.nets) and solvers from caffe_pb2.SolverParameter
(fetal_biometry.solvers); never edit the files by hand. Paths inside them are relative to the
repository root, so run Caffe from there, e.g.

    caffe train --solver prototxt/tutorial_cnn/solver.prototxt
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, catalog  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in file differs from the generator")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in catalog.generate().items():
        path = ROOT / relative
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(relative)
        if not args.check:
            atomic.write_text(path, text)
    verb = "differ from the generator" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
