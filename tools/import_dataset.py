#!/usr/bin/env python3
"""Import annotated scans from a labelling tool's export (or HC18) as a dataset.

FORMAT is one of
  cvat     CVAT "for images 1.1" XML (annotations.xml); images under --images (default: the
           XML's folder), found by each <image name>
  labelme  a folder of LabelMe JSON files; images by their imagePath (relative to the JSON),
           or with --images by the imagePath's file name in that folder
  coco     COCO instances JSON (polygons, RLE, compressed RLE); images under --images
           (default: the JSON's folder), found by file_name
  masks    a folder of label-map PNGs (STEM.png labels image STEM in --images, required);
           --values maps their values to class names (default: the dataset's own table)
  hc18     HC18's layout: a folder of NNN_HC.png with NNN_HC_Annotation.png ellipse rings;
           pixel sizes from --spacing-csv (training_set_pixel_size_and_HC.csv); head planes

Labels map to the dataset's classes by --classes MAP.json ({"SB": "stomach_bubble",
"calipers": null}; null ignores a label), else by the class names themselves, any case:
background, amniotic_fluid, stomach_bubble, umbilical_vein, shadow, abdomen, spine, rib.
Overlaps are layered fluid, abdomen, shadow, spine, rib, stomach bubble, umbilical vein on
top (CVAT: by z_order first; LabelMe: in list order). Each image needs exactly one abdomen
(an ellipse is taken exactly, a polygon, polyline or mask is fitted). The plane verdict comes
from a plane_acceptable / plane_unacceptable tag (CVAT <tag>, LabelMe flag, COCO image
field), else from a stomach bubble and an umbilical vein annotated inside the abdomen.

Images are PNG, JPEG, ... or DICOM (--frame N of a cine loop; a calibrated ultrasound region
is cropped to, the annotations moved with it; --geometry then describes the crop). Pixel
spacing: --spacing-csv per image, else --spacing for all, checked against a DICOM's own
calibration, which serves when neither is given.

An image (or geometry file) is read only from inside its folder: a name with '..', an
absolute path or a symlink leading out of the folder is refused, naming the file and path.

Every problem of every image is listed at once (annotation file, image, shape) and nothing is
written; the dataset is written aside and renamed into place, and OUT must be new, empty or
(with --overwrite) a dataset this tool made. With --skip-bad the images that import are
written and each one left out is listed with its problems (on the terminal and in
dataset.json, under source.skipped). Without --geometry the fan of each image is estimated;
--accept-fan-below C also takes fans below the confidence threshold (a note names each).

examples:
  python tools/import_dataset.py cvat export/annotations.xml --images export/images \\
      --spacing 0.3 --out data/cvat
  python tools/import_dataset.py labelme labelme_jsons/ --classes classes.json \\
      --spacing-csv spacing.csv --geometry probe.json --out data/labelme
  python tools/import_dataset.py coco instances.json --images images/ --spacing 0.3 --out data/coco
  python tools/import_dataset.py masks label_maps/ --images scans/ --values values.json \\
      --spacing 0.3 --out data/masks
  python tools/import_dataset.py hc18 HC18/training_set \\
      --spacing-csv HC18/training_set_pixel_size_and_HC.csv --out data/hc18
"""
import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from fetal_biometry import atomic, cli, figures, importers  # noqa: E402
from fetal_biometry.io import dataset, limits  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, epilog=limits.HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=importers.FORMATS, help="the annotations' format")
    parser.add_argument("annotations", type=pathlib.Path,
                        help="annotation file (cvat, coco) or folder (labelme, masks, hc18)")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                        help="dataset folder to write (new, empty, or made by this tool)")
    parser.add_argument("--images", type=pathlib.Path, metavar="DIR",
                        help="folder of the scans (see FORMAT above for the default)")
    parser.add_argument("--classes", type=pathlib.Path, metavar="MAP.json",
                        help="JSON map from the tool's label names to class names (or null)")
    parser.add_argument("--values", type=pathlib.Path, metavar="MAP.json",
                        help="masks: JSON map from label-map values to class names (or null)")
    parser.add_argument("--spacing-csv", type=pathlib.Path, metavar="CSV",
                        help="pixel size per image, HC18's convention: columns "
                             "'filename,pixel size(mm)'")
    parser.add_argument("--spacing", type=cli.spacing_mm, metavar="MM",
                        help="pixel size (mm) of every image not in --spacing-csv")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE|DIR",
                        help="probe geometry: one JSON for every image (a geometry dict or a "
                             "case record) or a folder of STEM.json; default: estimated from "
                             "each image's fan (tools/beam_map.py shows the estimate)")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="the frame (from 0) of multi-frame DICOM images that was annotated")
    parser.add_argument("--fan-tolerance", type=float, metavar="PX",
                        help="how far an annotation may reach outside the fan (default: 3 px "
                             "for drawn shapes, 2 px for masks)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds a dataset this tool made earlier")
    parser.add_argument("--skip-bad", action="store_true",
                        help="write every image that imports; list each one left out, with its "
                             "problems, in dataset.json (default: nothing written if any fails)")
    parser.add_argument("--accept-fan-below", type=cli.confidence, metavar="C",
                        help="use estimated fans whose confidence is below the threshold but at "
                             "least C")
    parser.add_argument("--contact-sheet", type=pathlib.Path, metavar="PNG",
                        help="also draw the first scans beside their imported labels into PNG")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.fan_tolerance is not None and not args.fan_tolerance >= 0:
        parser.error("--fan-tolerance must be >= 0")
    if args.frame is not None and args.frame < 0:
        parser.error("--frame counts from 0")
    options = importers.Options(images=args.images, classes=args.classes, values=args.values,
                                spacing_csv=args.spacing_csv, spacing_mm=args.spacing,
                                geometry=args.geometry, fan_tolerance_px=args.fan_tolerance,
                                frame=args.frame, overwrite=args.overwrite, skip_bad=args.skip_bad,
                                accept_fan_below=args.accept_fan_below)
    start = time.perf_counter()
    try:
        if args.contact_sheet:  # before the work: a user's file of that name is never replaced
            atomic.claim_file(args.contact_sheet, importers.TOOL, [args.annotations, args.out],
                              "--contact-sheet")
        out, warnings = importers.import_dataset(
            args.format, args.annotations, args.out, options,
            progress=lambda items: tqdm(items, desc=f"import {args.format}", unit="image"))
        for warning in warnings:
            tqdm.write(f"note: {warning}")
        seconds = time.perf_counter() - start
        count = len(dataset.open(out).cases)
        if args.contact_sheet:
            atomic.write_bytes(args.contact_sheet, atomic.signed_png(figures.dataset_sheet(out), importers.TOOL))
    except (importers.AnnotationError, dataset.DatasetError, atomic.OutputError, OSError) as error:
        print(f"import_dataset: error: {error}", file=sys.stderr)
        return 1
    skipped = len(dataset.open(out).source.get("skipped", []))
    print(f"wrote {count} cases to {out} ({count / seconds:.1f} images/s)"
          + (f"; {skipped} image(s) skipped, listed in {out / 'dataset.json'}" if skipped else "")
          + (f", contact sheet {args.contact_sheet}" if args.contact_sheet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
