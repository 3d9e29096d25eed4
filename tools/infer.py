#!/usr/bin/env python3
"""Dense class maps, overlays and the abdominal circumference for whole scans.

Classifies every pixel inside the fan with a trained patch classifier made fully convolutional
(one forward pass per scan; per beam-angle sector for the rotate encoding), then fits the
abdomen and measures the AC where the pixel spacing is known. For each scan, OUT gets
NAME_probs.npy (class probabilities), NAME_labels.png (0 background, 1 amniotic fluid,
2 stomach bubble, 3 umbilical vein, 4 shadowing artifact, 255 outside the fan),
NAME_overlay.png and NAME.json (AC, ellipse, plane verdict with reasons).

SCAN is an image (PNG, JPEG or DICOM) or a dataset folder (every case; geometry and spacing
from its case records). For images, the probe geometry comes from --geometry (a case JSON or a
bare geometry dict), or else is estimated from the image's fan (tools/beam_map.py shows
the estimate); the spacing from --spacing or that case JSON (without it, no AC).

example:
  python tools/infer.py runs/fetal_channels/snapshots/net_iter_1500.caffemodel \
      prototxt/fetal_channels/deploy.prototxt data/fetal/heldout --out runs/infer
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import caffe_env, dataset, fan, geometry, inference, patches  # noqa: E402
from tqdm import tqdm  # noqa: E402


def _scans(items, geometry_file, spacing):
    """(stem, image, directions, spacing) for every scan named on the command line."""
    record = json.loads(pathlib.Path(geometry_file).read_text()) if geometry_file else None
    for item in map(pathlib.Path, items):
        if item.is_dir():
            for case in dataset.open(item).iter_cases():
                yield case.name, case.image, geometry.beam_directions(case.geometry, case.image.shape), case.spacing_mm
            continue
        image = dataset.read_image(item)
        if record is None:
            try:
                probe, confidence = fan.estimate_geometry(image)
            except fan.FanNotFound as err:
                raise ValueError(f"{item}: {err}; pass --geometry FILE") from None
            tqdm.write(f"{item.stem}: probe geometry estimated from the image "
                       f"(confidence {confidence:.2f})")
        else:
            probe = geometry.from_dict(record.get("probe", record))
        yield (item.stem, image, geometry.beam_directions(probe, image.shape),
               spacing or (record or {}).get("pixel_spacing_mm"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="trained .caffemodel of the patch classifier")
    parser.add_argument("deploy", help="its deploy prototxt (prototxt/fetal_ENCODING/deploy.prototxt)")
    parser.add_argument("scans", nargs="+", metavar="SCAN", help="image files or dataset folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--encoding", choices=patches.ENCODINGS,
                        help="beam encoding the net was trained with (default: from the deploy "
                             "file's folder name, prototxt/fetal_ENCODING/)")
    parser.add_argument("--geometry", help="probe geometry for image files: case JSON or geometry dict")
    parser.add_argument("--spacing", type=float, help="pixel spacing in mm for image files")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    encoding = args.encoding or pathlib.Path(args.deploy).parent.name.removeprefix("fetal_")
    if encoding not in patches.ENCODINGS:
        parser.error(f"cannot tell the beam encoding from {args.deploy}; pass --encoding")
    try:
        caffe_env.set_device(args.gpu)
        classifier = inference.DenseClassifier(args.deploy, args.weights, encoding)
        for stem, image, directions, spacing in tqdm(_scans(args.scans, args.geometry, args.spacing),
                                                     desc="infer", unit="scan"):
            record = inference.infer_scan(classifier, image, directions, spacing, args.out, stem)
            ac = record.get("ac_mm")
            tqdm.write(f"{stem}: " + ("AC not measured (no spacing)" if "ac_mm" not in record else
                                      f"AC {ac:.1f} mm" if ac else "no abdomen found")
                       + ("" if "plane_acceptable" not in record else
                          ", plane acceptable" if record["plane_acceptable"] else
                          f", plane rejected: {'; '.join(record['reasons'])}"))
    except (ValueError, OSError, RuntimeError, dataset.DatasetError) as err:
        print(f"infer: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
