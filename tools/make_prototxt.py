#!/usr/bin/env python3
"""Regenerate every checked-in prototxt under prototxt/ from fetal_biometry.nets.catalog, and the
net diagrams under docs/ (caffe.draw; needs graphviz).

Nets come from caffe.NetSpec (fetal_biometry.nets.spec) and solvers from caffe_pb2.SolverParameter
(fetal_biometry.nets.solvers); never edit the files by hand. Paths inside them are relative to the
repository root, so run Caffe from there, e.g.

    caffe train --solver prototxt/tutorial_cnn/solver.prototxt
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, figures, paths  # noqa: E402
from fetal_biometry.nets import catalog  # noqa: E402


def diagrams(generated: dict[str, str]) -> list[str]:
    """Draw the docs/ net diagrams of catalog.DIAGRAMS; the paths whose picture changed."""
    from google.protobuf import text_format

    from fetal_biometry.caffe_env import proto

    changed = []
    for relative, net_file in catalog.DIAGRAMS.items():
        path = paths.root() / relative
        before = path.read_bytes() if path.is_file() else None
        figures.net_diagram(text_format.Parse(generated[net_file], proto().NetParameter()), path)
        if path.read_bytes() != before:
            changed.append(relative)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in file differs from the generator")
    args = parser.parse_args(argv)
    stale = []
    generated = catalog.generate()
    for relative, text in generated.items():
        path = paths.root() / relative
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(relative)
        if not args.check:
            atomic.write_text(path, text)
    if not args.check:  # graphviz's PNGs vary between its versions: drawn, never compared
        try:
            stale += diagrams(generated)
        except RuntimeError as error:
            print(f"make_prototxt: error: {error}", file=sys.stderr)
            return 1
    verb = "differ from the generator" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
