#!/usr/bin/env python3
"""Dense class maps, overlays and the abdominal circumference for whole scans.

MODEL_DIR is a model folder (made by tools/train.py: model.json, deploy.prototxt, weights); it
records the beam encoding and the spacing the net was trained at. Each scan is resampled to
that spacing, classified densely (fully convolutional, tile by tile), and its maps brought
back to the scan's own grid, where the abdomen is fitted and the AC measured in mm from the
scan's own spacing. For each scan OUT gets NAME_probs.npy (class probabilities, float16),
NAME_labels.png (0 background, 1 amniotic fluid, 2 stomach bubble, 3 umbilical vein,
4 shadow, 255 outside the fan), NAME_overlay.png and NAME.json (spacing and its source,
probe geometry and its source, AC, ellipse, plane verdict with reasons); OUT/infer.json lists
every scan and every failure.

SCAN is an image (PNG, JPEG or DICOM) or a dataset folder (every case; geometry and spacing
from its case records). For images:
  spacing   from the file (DICOM ultrasound region, PixelSpacing, ...) or --spacing; without
            one the scan is refused, unless --assume-spacing MM classifies it at an assumed
            spacing (then no AC is reported, and the JSON says so)
  geometry  from --geometry (a case JSON or a bare probe object), else estimated from the
            image's fan, in colour (tools/beam_map.py shows the estimate)
A bad scan is reported with its file and skipped; the exit status is 1 if any failed.
Limits: scans up to 16 megapixels at the model's spacing (memory about 0.5 GB).

example:
  python tools/infer.py runs/fetal_channels data/fetal/heldout --out runs/infer
  python tools/infer.py runs/fetal_channels exam.dcm --frame 12 --out runs/infer
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, caffe_env, cli
from fetal_biometry.geometry import fan, probe as geom
from fetal_biometry.inference import dense as inference
from fetal_biometry.io import dataset, scans
from fetal_biometry.nets import model as model_folder
from tqdm import tqdm  # noqa: E402

MARKER = "infer.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL_DIR", help="model folder (holds model.json)")
    parser.add_argument("scans", nargs="+", metavar="SCAN", help="image files or dataset folders")
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                        help="output folder (created; a folder of anything else is refused)")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE",
                        help="probe geometry for image files: case JSON or probe object")
    parser.add_argument("--spacing", type=cli.spacing_mm, metavar="MM",
                        help="pixel spacing of image files, mm per pixel (checked against a "
                             "DICOM's own calibration)")
    parser.add_argument("--assume-spacing", type=cli.spacing_mm, metavar="MM",
                        help="classify scans without a known spacing as if they had this one "
                             "(no AC is measured for them)")
    parser.add_argument("--frame", type=int, metavar="N", help="frame of a multi-frame DICOM (0-based)")
    parser.add_argument("--region", type=int, metavar="K",
                        help="only the K-th calibrated region of a multi-region DICOM")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier infer output folder")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU, Caffe backend)")
    cli.add_inference_options(parser)
    return parser


def _unique(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when an earlier scan of this run took it."""
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name)
    return name


def _inputs(items: list[str], args):
    """(label, loader) per scan; a loader returns (stem, image, rgb, probe, spacing, record)."""
    for item in map(pathlib.Path, items):
        if item.is_dir():
            data = dataset.open(item)
            for name in data.cases:
                yield f"{item}/{name}", lambda data=data, name=name: _case(data, name)
        else:
            yield str(item), lambda item=item: _images(item, args)


def _case(data: dataset.Dataset, name: str):
    case = data.read(name)
    record = {"source": str(data.root / "cases" / f"{name}.json"), "spacing_mm": case.spacing_mm,
              "spacing_source": "case record", "geometry_source": "case record"}
    return [(name, case.image, case.geometry, case.spacing_mm, record)]


def _images(path: pathlib.Path, args):
    found = []
    for scan in scans.read_scans(path, frame=args.frame, region=args.region, spacing=args.spacing):
        try:
            probe, _, how = fan.given_or_estimated(scan.rgb, args.geometry)
        except fan.FanNotFound as error:
            raise ValueError(f"no fan found ({error}); pass --geometry FILE") from None
        record = {"source": str(path), "frame": args.frame, "region": scan.region,
                  "spacing_mm": scan.spacing_mm, "spacing_source": scan.spacing_source,
                  "geometry_source": how, "warnings": list(scan.warnings)}
        found.append((scan.name, scan.gray, probe, scan.spacing_mm, record))
    return found


def _infer_one(classifier, image, probe, spacing, record, assume) -> tuple[dict, tuple]:
    measure = spacing is not None
    if not measure:
        if assume is None:
            raise ValueError("no pixel spacing (none in the file): pass --spacing MM, or "
                             "--assume-spacing MM to classify it without an AC")
        spacing = assume
        record.update(assumed_spacing_mm=assume,
                      ac_note="AC not measured: the pixel spacing is unknown (classified at an "
                              "assumed spacing)")
    result, probs, labels, measured = inference.infer_scan(classifier, image, probe, spacing, measure)
    record.update(result, geometry=geom.to_dict(probe))
    return record, (probs, labels, measured)


def _summary_line(stem: str, record: dict) -> str:
    if "ac_mm" not in record:
        return f"{stem}: AC not measured (pixel spacing unknown)"
    ac = record["ac_mm"]
    verdict = ("plane acceptable" if record["plane_acceptable"] else
               f"plane rejected: {'; '.join(record['reasons'])}")
    return f"{stem}: " + (f"AC {ac:.1f} mm" if ac else "no abdomen measured") + f", {verdict}"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        cli.inference_setup(args)
        if args.gpu is not None:
            caffe_env.check_device(args.gpu)  # first: no CUDA, no device, no output folder
        model = model_folder.load(args.model)
        atomic.claim_output(args.out, MARKER, inputs=[args.model, *args.scans], overwrite=args.overwrite)
        if args.backend == "caffe":  # OpenCV needs no Caffe
            caffe_env.set_device(args.gpu)
        classifier = inference.DenseClassifier.from_model(model, args.backend)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"infer: error: {err}", file=sys.stderr)
        return 1
    done, failed, taken = [], [], set()
    try:
        inputs = list(_inputs(args.scans, args))
    except (ValueError, OSError) as err:  # a dataset folder that does not validate
        print(f"infer: error: {err}", file=sys.stderr)
        return 1
    for label, load in tqdm(inputs, desc="infer", unit="scan"):
        try:
            for stem, image, probe, spacing, record in load():
                stem = _unique(stem, taken)
                record, (probs, labels, measured) = _infer_one(classifier, image, probe, spacing,
                                                               {"scan": stem, **record}, args.assume_spacing)
                record["model"] = str(model.root)
                inference.write_outputs(args.out, stem, image, probs, labels, measured, record)
                done.append(record)
                tqdm.write(_summary_line(stem, record))
        except (ValueError, OSError) as err:
            failed.append({"scan": label, "error": str(err)})
            tqdm.write(f"infer: error: {label}: {err}", file=sys.stderr)
    atomic.write_text(args.out / MARKER, json.dumps({"model": str(model.root), "scans": done,
                                                     "failed": failed}, indent=1) + "\n")
    if failed:
        print(f"infer: {len(failed)} of {len(inputs)} input(s) failed (listed in {args.out / MARKER})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
