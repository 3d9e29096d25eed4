#!/usr/bin/env python3
"""Small LMDBs for tools/gpu_check.sh: the first records of the tutorial's MNIST LMDBs and of
the fetal patch classifier's (`make gpu-check-data`).

A GPU machine that takes only a small upload gets these beside the GPU bundle (tools/gpu_bundle.sh):
OUT (default data/gpu_check) receives

  mnist/train_lmdb mnist/val_lmdb                     the first --mnist-train / --mnist-val records
  fetal_channels/train_lmdb fetal_channels/val_lmdb   the first --fetal-train / --fetal-val records
  manifest.json                                       sources, record counts, bytes

Under 20 MiB together with the defaults (4000 + 1000 MNIST digits, 1200 + 400 patches of
3x48x48). The sources are LMDBs `make demo` writes: data/mnist (the tutorial stage) and
data/fetal/channels (tools/make_lmdb.py --encoding channels); their records are in random
order, so the first ones hold every class. OUT must be new or empty, or (with --overwrite) one
this tool wrote; it appears whole or not at all.

example:
  python tools/gpu_check_data.py --mnist data/mnist --fetal data/fetal/channels
"""
import argparse
import itertools
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli  # noqa: E402
from fetal_biometry.io import lmdb_writer  # noqa: E402

TOOL = "gpu_check_data"


def subsets(args: argparse.Namespace) -> dict[str, tuple[pathlib.Path, int]]:
    """Output LMDB (relative to OUT) -> (source LMDB, records to copy)."""
    return {"mnist/train_lmdb": (args.mnist / "train_lmdb", args.mnist_train),
            "mnist/val_lmdb": (args.mnist / "val_lmdb", args.mnist_val),
            "fetal_channels/train_lmdb": (args.fetal / "train_lmdb", args.fetal_train),
            "fetal_channels/val_lmdb": (args.fetal / "val_lmdb", args.fetal_val)}


def check_sources(plan: dict[str, tuple[pathlib.Path, int]]) -> None:
    """Every source is an LMDB with enough records, or a sentence naming it and what makes it."""
    for source, wanted in plan.values():
        if not (source / "data.mdb").is_file():
            raise FileNotFoundError(f"{source}: not an LMDB (no data.mdb); `make demo` writes it")
        available = lmdb_writer.count(source)
        if available < wanted:
            raise ValueError(f"{source}: {available} records, fewer than the {wanted} asked for")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("data/gpu_check"))
    parser.add_argument("--mnist", type=pathlib.Path, default=pathlib.Path("data/mnist"),
                        help="folder with the tutorial's train_lmdb and val_lmdb (default: %(default)s)")
    parser.add_argument("--fetal", type=pathlib.Path, default=pathlib.Path("data/fetal/channels"),
                        help="folder with the patch classifier's train_lmdb and val_lmdb (default: %(default)s)")
    parser.add_argument("--mnist-train", type=cli.at_least_one, default=4000)
    parser.add_argument("--mnist-val", type=cli.at_least_one, default=1000)
    parser.add_argument("--fetal-train", type=cli.at_least_one, default=1200)
    parser.add_argument("--fetal-val", type=cli.at_least_one, default=400)
    parser.add_argument("--overwrite", action="store_true", help="replace an OUT this tool wrote")
    args = parser.parse_args(argv)
    plan = subsets(args)
    try:
        check_sources(plan)
        atomic.claim_output(args.out, TOOL, [args.mnist, args.fetal], args.overwrite, "--out")
        with atomic.staged_dir(args.out) as staged:
            atomic.mark(staged, TOOL)
            manifest = {}
            for name, (source, wanted) in plan.items():
                count = lmdb_writer.write(staged / name, itertools.islice(lmdb_writer.read(source), wanted))
                size = (staged / name / "data.mdb").stat().st_size
                manifest[name] = {"source": str(source), "records": count, "bytes": size}
            atomic.write_text(staged / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    except (FileNotFoundError, ValueError, atomic.OutputError, OSError) as err:
        print(f"gpu_check_data: error: {err}", file=sys.stderr)
        return 1
    total = sum(entry["bytes"] for entry in manifest.values())
    counts = ", ".join(f"{name} {entry['records']}" for name, entry in manifest.items())
    print(f"gpu_check_data: {counts} records, {total / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
