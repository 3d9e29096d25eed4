#!/usr/bin/env python3
"""Turn an annotated dataset into Caffe LMDBs of patches that carry the beam direction.

DATASET is a folder in the project's dataset format (see fetal_biometry/io/dataset.py; made by
tools/simulate.py or filled with your own scans). OUT receives

  train_lmdb/ val_lmdb/ test_lmdb/   Caffe Datum records: uint8 patches, classifier label
  manifest.json                      sources, parameters (target spacing, patch in px and mm),
                                     records per class, hashes

Every scan is resampled to one target spacing first (--spacing-mm; default the median spacing
of the training cases), so a patch covers the same millimetres of anatomy in every scan;
models trained on these LMDBs resample the scans they classify the same way.

Classes: 0 background, 1 amniotic fluid, 2 stomach bubble, 3 umbilical vein, 4 shadowing
artifact. Cases are split by case, never by patch. OUT is replaced only when everything
succeeded; any bad input is reported with its case and nothing is written. OUT must be a new or
empty folder, or (with --overwrite) one this tool wrote before (it holds manifest.json); never
the dataset, a folder inside it or holding it. Hidden .OUT.tmp-* folders of a killed run are
removed by the next one.

Augmentation (--augment K): Caffe's Data layer only crops and mirrors, so variety is baked
into the training LMDB. Each training scan gives K more versions of itself, each independently
rotated (up to 10 degrees, the beam directions turned with it) and scaled (up to 10 %), with
gain, contrast, gamma, blur and noise changed (ranges in fetal_biometry/patches/augment.py, recorded in
the manifest), and the same number of patches per class is sampled on each: the training LMDB
grows (1 + K) times. Validation and test stay clean; --augment 0 (the default) writes exactly
what it did before. Seeded like everything else: the same seed gives the same bytes.

Memory: every scan is held while the LMDBs are made (gray and labels, 2 bytes per pixel),
and the one being sampled needs about 20 bytes per pixel more at the target spacing (its beam
map is made there; about 32 while an augmented version of it is made): 100 scans of 256x256
take well under 100 MB above Python's own, an 8000x8000 scan kept at its spacing about 1.3 GB.
The patches of a split are held until it is written: with --augment K, 1 + K times the
training ones (100 scans x 200 patches x 4.8 kB = 96 MB per copy with channels).

example:
  python tools/make_lmdb.py data/fetal/sim data/fetal/channels --encoding channels
"""
import argparse
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli  # noqa: E402
from fetal_biometry.io import dataset, limits  # noqa: E402
from fetal_biometry.labels import CLASSIFIER_CLASSES  # noqa: E402
from fetal_biometry.patches import encoding as patches, records as patch_records  # noqa: E402


def per_class(text: str) -> dict[int, int]:
    counts = [int(v) for v in text.split(",")]
    if len(counts) not in (1, len(CLASSIFIER_CLASSES)) or min(counts) < 0:
        raise argparse.ArgumentTypeError(
            f"give one count or {len(CLASSIFIER_CLASSES)} comma-separated counts ({', '.join(CLASSIFIER_CLASSES)})")
    counts = counts * len(CLASSIFIER_CLASSES) if len(counts) == 1 else counts
    return dict(enumerate(counts))


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, epilog=limits.HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset folder (dataset.json, images/, labels/, cases/)")
    parser.add_argument("out", help="output folder for the LMDBs, mean file and manifest")
    parser.add_argument("--patch", type=int, default=patches.SIZE,
                        help=f"patch side in pixels (default {patches.SIZE})")
    parser.add_argument("--encoding", choices=patches.ENCODINGS, default="channels",
                        help="beam direction: 'rotate' turns each patch so the beam runs down; "
                             "'channels' adds dx, dy planes; 'none' is the image-only ablation "
                             "(default channels)")
    parser.add_argument("--per-class", type=per_class, default=per_class("40"),
                        help="patches per scan for each class: one number, or five for "
                             "background,fluid,stomach,vein,shadow (default 40)")
    parser.add_argument("--splits", type=cli.fractions, default=(0.7, 0.15, 0.15),
                        help="shares of cases for train,val,test (default 0.7,0.15,0.15)")
    parser.add_argument("--spacing-mm", type=float, metavar="MM",
                        help="target spacing every scan is resampled to, mm per pixel "
                             "(default: the median spacing of the training cases)")
    parser.add_argument("--augment", type=int, default=0, metavar="K",
                        help="augmented copies of each training patch, from independently "
                             "rotated, scaled and re-gained versions of its scan (see above); "
                             f"0 to {patch_records.MAX_AUGMENT}, default 0 (none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling, split and key order seed")
    parser.add_argument("--require-all-classes", action="store_true",
                        help="fail when a scan has no pixels of a class asked for")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it holds LMDBs this tool wrote before")
    args = parser.parse_args(argv)
    source = pathlib.Path(args.dataset)
    try:
        patch_records.check_arguments(args.patch, args.per_class, args.splits, args.seed,
                                      args.spacing_mm, args.augment)
        for path in atomic.claim_output(args.out, patch_records.TOOL, [source], args.overwrite, "OUT"):
            print(f"make_lmdb: removed {path}, left by an interrupted run", file=sys.stderr)
        scans = list(tqdm(patch_records.dataset_scans(source), desc="read", unit="scan"))
        index = (source / "dataset.json").read_bytes()
        manifest = patch_records.build(
            scans, args.out, args.encoding, args.patch, args.per_class, args.splits, args.seed,
            args.require_all_classes, progress=lambda it, desc: tqdm(it, desc=desc, unit="scan"),
            spacing_mm=args.spacing_mm, augment=args.augment,
            sources={"dataset": str(source.resolve()),
                     "dataset_json_sha256": hashlib.sha256(index).hexdigest()})
    except (dataset.DatasetError, patch_records.RecordError, atomic.OutputError, OSError) as err:
        print(f"make_lmdb: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({s: manifest["splits"][s]["per_class"] for s in patch_records.SPLITS}))
    print(f"wrote {args.out} ({args.encoding}, {args.patch}x{args.patch} px = "
          f"{manifest['patch_mm']:.1f} mm at {manifest['spacing_mm']:.3f} mm per pixel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
