#!/usr/bin/env python3
"""Dense class maps, overlays and the abdominal circumference for whole scans.

MODEL_DIR is a model folder (made by tools/train.py: model.json, deploy.prototxt, weights) of
either kind: a patch classifier or a segmenter; it records the beam encoding and the spacing the
net was trained at. Each scan is resampled to that spacing, classified densely (the patch net
fully convolutional, tile by tile; the segmenter's U-Net in one pass), and its maps brought
back to the scan's own grid, where the abdomen is fitted and the AC measured in mm from the
scan's own spacing (a patch classifier: from where the body meets amniotic fluid; a segmenter:
from the abdomen it outlines, the fluid boundary as a second opinion). For each scan OUT gets
NAME_probs.npy (class probabilities, float16), NAME_labels.png (0 background, 1 amniotic
fluid, 2 stomach bubble, 3 umbilical vein, 4 shadow, and from a segmenter 5 abdomen, 6 spine,
7 rib; 255 outside the fan), NAME_overlay.png and NAME.json (spacing and its source,
probe geometry and its source, AC, ellipse, plane verdict with reasons); OUT/infer.json lists
every scan and every failure.

With --dicom-out, each scan read from a DICOM file also gets, in OUT/dicom, NAME_sr.dcm (its
measurements as a DICOM Comprehensive SR, OB-GYN template TID 5000), NAME_seg.dcm (its class
map as a DICOM SEG) and, for a cine loop, NAME_frame.dcm (the measured frame as an image of its
own, which the SEG references); they carry the source's patient and study (docs/pacs.md).
With --nrrd: NAME_scan.nrrd, NAME_labels.nrrd and NAME_probs.nrrd with the scan's spacing and
origin, for 3D Slicer or ITK-SNAP.

SCAN is an image (PNG, JPEG or DICOM) or a dataset folder (every case; geometry and spacing
from its case records). For images:
  spacing   from the file (DICOM ultrasound region, PixelSpacing, ...) or --spacing; without
            one the scan is refused, unless --assume-spacing MM classifies it at an assumed
            spacing (then no AC is reported, and the JSON says so)
  geometry  from --geometry (a case JSON or a bare probe object), else estimated from the
            image's fan, in colour, with a DICOM's transducer and reference pixel as priors
            (tools/beam_map.py shows the estimate). A fan below the confidence threshold is
            used only with --accept-fan-below C (marked low-confidence). Without a fan, a
            model of encoding 'none' (no beam directions) classifies the whole image and
            says so in NAME.json ("geometry_source"); other encodings refuse the scan
            image's fan, in colour (tools/beam_map.py shows the estimate)
A segmenter of the head and femur too (make_segment_records.py --classes panel) tells each scan's
plane type (abdomen, head, femur or none) from its map and measures what that plane allows: the
AC; HC, OFD, BPD (outer-to-outer and outer-to-inner) and the cephalic index; or FL (NAME.json:
"plane_type", "measurements").
The scans given together are one exam: OUT/infer.json carries its panel (fetal_biometry.measure.growth):
each measurement (the mean over the scans whose plane was accepted) with the gestational age it
suggests (an estimate: INTERGROWTH-21st from HC, Hadlock from FL, AC, BPD), Hadlock's estimated
fetal weight when AC and FL were both measured, and, only with the age given by --ga WEEKS or
--lmp DATE --exam-date DATE, each measurement's centile and z-score on the INTERGROWTH-21st fetal
growth standards (14-40 weeks) and the weight's on the INTERGROWTH-21st standard for Hadlock's
HC, AC and FL estimate (18-41 weeks). A centile at an age estimated from the same measurement would be
meaningless, so none is given without a stated age. OUT/centiles.png draws each measurement on
its INTERGROWTH-21st chart (3rd, 10th, 50th, 90th, 97th centiles) when the exam measured one.
A bad scan is reported with its file and skipped; the exit status is 1 if any failed.
Limits: scans up to 16 megapixels at the model's spacing (memory about 0.5 GB).

example:
  python tools/infer.py runs/fetal_channels data/fetal/heldout --out runs/infer
  python tools/infer.py runs/fetal_channels exam.dcm --frame 12 --out runs/infer
  python tools/infer.py runs/fetal_channels exam.dcm --dicom-out --nrrd --out runs/infer
  python tools/infer.py runs/fetal_channels exam/ --ga 31.4 --out runs/exam
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, caffe_env, cli, figures, paths
from fetal_biometry.geometry import fan, probe as geom
from fetal_biometry.inference import dense as inference
from fetal_biometry.io import dataset, dicom, limits, scans
from fetal_biometry.measure import growth
from fetal_biometry.nets import model as model_folder
from tqdm import tqdm  # noqa: E402

TOOL = "infer"  # the output marker of its folders (fetal_biometry.atomic.mark)
INDEX = "infer.json"  # every scan and failure of the run; no scan is named "infer" (see _unique)
CHARTS = "centiles.png"  # the exam's centile charts; no scan is named "centiles" either
EXAM = "exam"  # --dicom-out's SR of the exam's panel: dicom/exam_sr.dcm


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, epilog=limits.HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL_DIR", help="model folder (holds model.json)")
    parser.add_argument("scans", nargs="+", metavar="SCAN", help="image files or dataset folders")
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                        help="output folder (created; a folder of anything else is refused)")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE",
                        help="probe geometry for image files: case JSON or probe object")
    parser.add_argument("--accept-fan-below", type=cli.confidence, metavar="C",
                        help=f"use an estimated fan whose confidence is below the threshold "
                             f"({fan.MIN_CONFIDENCE:g}) but at least C (marked low-confidence)")
    parser.add_argument("--spacing", type=cli.spacing_mm, metavar="MM",
                        help="pixel spacing of image files, mm per pixel (checked against a "
                             "DICOM's own calibration)")
    parser.add_argument("--assume-spacing", type=cli.spacing_mm, metavar="MM",
                        help="classify scans without a known spacing as if they had this one "
                             "(no AC is measured for them)")
    parser.add_argument("--frame", type=int, metavar="N", help="frame of a multi-frame DICOM (0-based)")
    parser.add_argument("--region", type=int, metavar="K",
                        help="only the K-th calibrated region of a multi-region DICOM")
    parser.add_argument("--dicom-out", action="store_true",
                        help="also write a DICOM SR of the measurements and a DICOM SEG of the class "
                             "map (OUT/dicom) for scans read from DICOM files")
    parser.add_argument("--nrrd", action="store_true",
                        help="also write scan, class map and probabilities as NRRD (spacing, origin)")
    parser.add_argument("--ga", type=float, metavar="WEEKS",
                        help="gestational age known from dates or an early scan (14-40): the "
                             "exam's measurements get their INTERGROWTH-21st centiles at it")
    parser.add_argument("--lmp", metavar="YYYY-MM-DD",
                        help="first day of the last menstrual period (with --exam-date): the "
                             "gestational age for the centiles")
    parser.add_argument("--exam-date", metavar="YYYY-MM-DD", help="the exam's date (with --lmp)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier infer output folder")
    parser.add_argument("--keep-names", action="store_true",
                        help="name a DICOM file's outputs after the file and record its path "
                             "(default: after a hash of its SOP Instance UID, as a scanner's file "
                             "name may be the patient's)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU, Caffe backend)")
    cli.add_inference_options(parser)
    return parser


def _unique(stem: str, taken: set[str]) -> str:
    """``stem`` as a safe file name (:func:`fetal_biometry.paths.safe_name`), or ``NAME-2``,
    ``NAME-3``... when an earlier scan of this run (or the index) took it."""
    stem = paths.safe_name(stem)
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name)
    return name


def _inputs(items: list[str], args, encoding: str):
    """(label, loader) per scan; a loader returns (stem, image, rgb, probe, spacing, record)."""
    for item in map(pathlib.Path, items):
        if item.is_dir():
            data = dataset.open(item)
            for name in data.cases:
                yield f"{item}/{name}", lambda data=data, name=name: _case(data, name)
        else:
            yield str(item), lambda item=item: _images(item, args, encoding)


def _case(data: dataset.Dataset, name: str):
    case = data.read(name)
    record = {"source": str(data.root / "cases" / f"{name}.json"), "spacing_mm": case.spacing_mm,
              "spacing_source": "case record", "geometry_source": "case record"}
    return [(name, case.image, case.geometry, case.spacing_mm, record)]


def _images(path: pathlib.Path, args, encoding: str):
    found = []
    hidden = dicom.is_dicom(path) and not args.keep_names  # the file name may be the patient's
    for scan in scans.read_scans(path, frame=args.frame, region=args.region, spacing=args.spacing,
                                 keep_name=args.keep_names):
        estimate = fan.probe_of(scan.rgb, scan.transducer, scan.reference_pixel, args.geometry,
                                  args.accept_fan_below)
        probe, how = estimate.geometry, estimate.source
        if probe is None:
            if encoding != inference.NO_FAN_ENCODING:
                spacing = ("unknown" if scan.spacing_mm is None
                           else f"{scan.spacing_mm:.4g} mm ({scan.spacing_source})")
                raise ValueError(f"{estimate.source}; pixel spacing {spacing}; the model's "
                                 f"encoding {encoding!r} needs "
                                 "beam directions: pass --geometry FILE, --accept-fan-below C, "
                                 f"or use a model of encoding {inference.NO_FAN_ENCODING!r}")
            how += (f"; classified over the whole image with encoding "
                    f"{inference.NO_FAN_ENCODING!r}, which needs no beam directions")
        elif estimate.low_confidence:
            tqdm.write(f"infer: warning: {path}: {estimate.source}", file=sys.stderr)
        record = {"source": scan.name if hidden else str(path), "frame": args.frame, "region": scan.region,
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
    record.update(result, geometry=None if probe is None else geom.to_dict(probe))
    return record, (probs, labels, measured)


def _dicom_objects(args, source: str, record: dict, labels, model, algorithm) -> dict:
    """The DICOM objects of one scan (none without --dicom-out), built before anything of the
    scan is written: a source they cannot reference fails the scan whole."""
    if not args.dicom_out:
        return {}
    from fetal_biometry.exchange import scan as dicom_out  # pydicom and highdicom: only here

    if not dicom.is_dicom(source):
        raise ValueError("--dicom-out: not read from a DICOM file (no study to report into); "
                         "leave out --dicom-out for it")
    try:
        return dicom_out.scan_objects(source, record.get("frame"), record.get("region"), labels,
                                      record, model.classes, algorithm)
    except ValueError as error:  # SourceError: a file the objects cannot reference
        raise ValueError(f"--dicom-out: {error}") from None


def _write_extras(args, stem: str, image, probs, labels, record: dict, objects: dict, classes) -> None:
    """Write the DICOM objects and, with --nrrd, the NRRD files; their names go in the record."""
    from fetal_biometry.exchange import nrrd, scan as dicom_out

    if objects:
        record["dicom"] = dicom_out.write_objects(args.out, stem, objects)
    if args.nrrd:
        spacing = record.get("spacing_mm") or record["assumed_spacing_mm"]
        origin = nrrd.origin_mm(record.get("region"), labels.shape, spacing)
        record["nrrd"] = nrrd.write_nrrd(args.out, stem, image, labels, probs, spacing, origin, classes)


def _exam_report(args, sources: list, panel: dict, algorithm) -> list[str]:
    """Write the SR of the exam's panel (dicom/exam_sr.dcm) when the scans are of one study;
    its name, or none with a note saying why."""
    from fetal_biometry.exchange import scan as dicom_out

    try:
        objects = dicom_out.exam_objects(sources, panel, algorithm)
    except ValueError as error:
        tqdm.write(f"infer: no SR of the exam: {error}", file=sys.stderr)
        return []
    return dicom_out.write_objects(args.out, EXAM, objects)


def _summary_line(stem: str, record: dict) -> str:
    if "plane_acceptable" not in record:
        return f"{stem}: not measured (pixel spacing unknown)"
    verdict = ("plane acceptable" if record["plane_acceptable"] else
               f"plane rejected: {'; '.join(record['reasons'])}")
    if "plane_type" in record:  # a segmenter of the head and femur too: what the plane allows
        values = [f"{k} {v:.1f} mm" for k, v in record["measurements"].items()]
        if record.get("cephalic_index") is not None:
            values.append(f"CI {record['cephalic_index']:.2f}")
        return (f"{stem}: {record['plane_type']} plane, "
                f"{', '.join(values) if values else 'nothing measured'}, {verdict}")
    ac = record["ac_mm"]
    return f"{stem}: " + (f"AC {ac:.1f} mm" if ac else "no abdomen measured") + f", {verdict}"


def exam_panel(records: list[dict], ga_weeks: float | None) -> dict:
    """The exam's panel (:func:`fetal_biometry.measure.growth.panel`) from its scans' records: each
    measurement averaged over the scans whose plane was accepted (a record's ``measurements``,
    or its AC)."""
    accepted = [r.get("measurements", {"AC": r.get("ac_mm")}) for r in records if r.get("plane_acceptable")]
    means, counts = growth.exam_measurements(accepted)
    return growth.panel(means, ga_weeks, counts)


def _panel_line(panel: dict) -> str:
    parts = []
    for key, m in panel["measurements"].items():
        text = f"{key} {m['mm']:.1f} mm"
        if m["ga_estimate"]:
            text += f" (suggests {m['ga_estimate']['weeks']:.1f} wk)"
        if m["centile"] is not None:
            text += f", centile {m['centile']:.0f} at {panel['ga_weeks']:.1f} wk"
        parts.append(text)
    efw = panel["efw"]
    if efw:
        centile = "" if efw["centile"] is None else f", centile {efw['centile']:.0f}"
        parts.append(f"EFW {efw['grams']:.0f} g ({efw['formula']}{centile})")
    return "exam: " + ("; ".join(parts) if parts else "nothing measured on an accepted plane")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        cli.inference_setup(args)
        ga_weeks = growth.ga_argument(args.ga, args.lmp, args.exam_date)
    except ValueError as err:
        print(f"infer: error: {err}", file=sys.stderr)
        return 1
    try:
        if args.gpu is not None:
            caffe_env.check_device(args.gpu)  # first: no CUDA, no device, no output folder
        model = model_folder.load(args.model)
        atomic.claim_output(args.out, TOOL, inputs=[args.model, *args.scans], overwrite=args.overwrite,
                            option="--out")
        if args.backend == "caffe":  # OpenCV needs no Caffe
            caffe_env.set_device(args.gpu)
        classifier = inference.engine(model, backend=args.backend)
        algorithm = None
        if args.dicom_out:
            from fetal_biometry.exchange.algorithm import Algorithm

            algorithm = Algorithm.from_model(model)
    except (ValueError, OSError, RuntimeError) as err:
        print(paths.printable(f"infer: error: {err}"), file=sys.stderr)
        return 1
    done, failed, taken = [], [], {pathlib.Path(INDEX).stem, pathlib.Path(CHARTS).stem, EXAM}
    exam_sources = []  # (path, frame) of the scans --dicom-out reports on
    atomic.mark(args.out, TOOL)
    try:
        inputs = list(_inputs(args.scans, args, model.encoding))
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
                objects = _dicom_objects(args, label, record, labels, model, algorithm)
                if objects:
                    exam_sources.append((label, record.get("frame")))
                _write_extras(args, stem, image, probs, labels, record, objects, model.classes)
                inference.write_outputs(args.out, stem, image, probs, labels, measured, record)
                done.append(record)
                tqdm.write(_summary_line(stem, record))
        except (ValueError, OSError) as err:
            said = str(err) if str(err).startswith(label) else f"{label}: {err}"  # the path once
            # The index is shared: a DICOM file's path (often the patient's name) stays out of it.
            hidden = dicom.is_dicom(label) and not args.keep_names
            failed.append({"scan": "a DICOM file (--keep-names records its path)" if hidden else label,
                           "error": str(err).replace(label, "(the file)") if hidden else str(err)})
            tqdm.write(paths.printable(f"infer: error: {said}"), file=sys.stderr)
    panel = exam_panel(done, ga_weeks)
    tqdm.write(_panel_line(panel))
    if any(k in growth.STANDARDS for k in panel["measurements"]):
        atomic.write_bytes(args.out / CHARTS, figures.figure_png(figures.centile_charts(panel)))
    index = {"model": str(model.root), "scans": done, "failed": failed, "panel": panel}
    if exam_sources:
        index["dicom"] = _exam_report(args, exam_sources, panel, algorithm)
    atomic.write_text(args.out / INDEX, json.dumps(index, indent=1) + "\n")
    if failed:
        print(f"infer: {len(failed)} of {len(inputs)} input(s) failed (listed in {args.out / INDEX})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
