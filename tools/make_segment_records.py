#!/usr/bin/env python3
"""Turn an annotated dataset into the segmenter's dense label records (Caffe LMDBs).

DATASET is a folder in the project's dataset format (fetal_biometry/dataset.py; made by
tools/simulate.py or tools/import_dataset.py). OUT receives

  train_image_lmdb/ train_label_lmdb/    (C, T, T) uint8 input tiles and (1, T, T) label tiles
  val_...  test_...                      under the same keys (two Data layers read them in step)
  infogain.binaryproto                   class weights for Caffe's InfogainLoss (diagonal H)
  manifest.json                          sources, spacing, tile, encoding, pixels per class, hashes

Every scan is resampled to --spacing-mm (default 1.0 mm per pixel), encoded (--encoding: 'none'
the gray scan, 'channels' with the beam-direction planes, 'beam' the probe's own depth x beam
grid) and cut into --tile x --tile tiles that cover it (overlapping, padded with label 255,
which the loss ignores like the pixels outside the fan). Labels are the output indices of the
class table --classes (fetal_biometry/labels.py): 'abdomen' (default) the dataset's eight abdominal
classes (background, amniotic fluid, stomach bubble, umbilical vein, shadow, abdomen, spine, rib);
'panel' these and the head's and femur's (skull, brain, midline, femur, thalamus, cavum septi
pellucidi, cerebellum), for mixed planes (tools/simulate.py --plane mixed). A class the table
lacks is learnt as its parent (head classes are background to 'abdomen'); a dataset with planes
the table cannot learn (head planes for 'abdomen') is refused.

Cases are split by case, never by tile. --augment K adds K transformed versions of each
training scan (rotation, scale, gain, contrast, gamma, blur, noise: fetal_biometry/augment.py),
applied to image, labels and direction field alike. Cases are read one at a time: memory does
not grow with the dataset. OUT must be a new or empty folder, or (with --overwrite) one this tool
wrote before; it is written aside and renamed into place when complete.

example:
  python tools/make_segment_records.py data/fetal/sim data/fetal/segment_channels --encoding channels
  python tools/make_segment_records.py data/mixed data/segment_panel --classes panel
"""
import argparse
import hashlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402
from fetal_biometry.labels import SEGMENTER_TABLES  # noqa: E402
from fetal_biometry.patches import scan_encoding, segment_records  # noqa: E402


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset folder (dataset.json, images/, labels/, cases/)")
    parser.add_argument("out", help="output folder for the records and manifest")
    parser.add_argument("--encoding", choices=scan_encoding.ENCODINGS, default="channels",
                        help="how the beam direction reaches the net (default channels)")
    parser.add_argument("--spacing-mm", type=float, default=segment_records.SPACING_MM, metavar="MM",
                        help=f"model spacing, mm per pixel (default {segment_records.SPACING_MM})")
    parser.add_argument("--tile", type=int, default=segment_records.TILE,
                        help=f"tile side in pixels, a multiple of 16 (default {segment_records.TILE})")
    parser.add_argument("--splits", type=cli.fractions, default=(0.7, 0.15, 0.15),
                        help="shares of cases for train,val,test (default 0.7,0.15,0.15)")
    parser.add_argument("--augment", type=int, default=0, metavar="K",
                        help=f"augmented versions of each training scan, 0 to {segment_records.MAX_AUGMENT}")
    parser.add_argument("--seed", type=int, default=0, help="split, key order and augmentation seed")
    parser.add_argument("--weighting", choices=tuple(segment_records.WEIGHTINGS),
                        help="lift of the rare classes' weights: full = max(1, min(10, median freq "
                             "/ freq)), sqrt = max(1, sqrt(median freq / freq)); default full for the "
                             "abdomen table (chosen on validation), sqrt for the others; docs/segmenter.md")
    parser.add_argument("--classes", choices=tuple(SEGMENTER_TABLES), default="abdomen",
                        help="the class table the segmenter learns: abdomen (8 abdominal classes) or "
                             "panel (abdomen, head and femur: mixed planes); default abdomen")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it holds records this tool wrote before")
    args = parser.parse_args(argv)
    source = pathlib.Path(args.dataset)
    try:
        segment_records.check_arguments(args.encoding, args.spacing_mm, args.tile, args.splits,
                                        args.seed, args.augment, args.weighting, classes=args.classes)
        for path in atomic.claim_output(args.out, segment_records.TOOL, [source], args.overwrite, "OUT"):
            print(f"make_segment_records: removed {path}, left by an interrupted run", file=sys.stderr)
        data = dataset.open(source)
        manifest = segment_records.build(
            data, args.out, args.encoding, args.spacing_mm, args.tile, args.splits, args.seed,
            args.augment, progress=lambda it, desc: tqdm(it, desc=desc, unit="scan"), classes=args.classes,
            sources={"dataset": str(source.resolve()), "generator": data.generator,
                     "dataset_json_sha256": hashlib.sha256((source / "dataset.json").read_bytes()).hexdigest()},
            weighting=args.weighting)
    except (dataset.DatasetError, segment_records.RecordError, atomic.OutputError, OSError) as err:
        print(f"make_segment_records: error: {err}", file=sys.stderr)
        return 1
    counts = {s: v["records"] for s, v in manifest["splits"].items()}
    print(f"wrote {args.out} ({args.encoding}, tiles of {args.tile} px = {args.tile * args.spacing_mm:.0f} mm "
          f"at {args.spacing_mm:g} mm per pixel; records {counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
