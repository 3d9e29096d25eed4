#!/usr/bin/env python3
"""Beam directions of an ultrasound image: the probe geometry, given or read off the image.

IMAGE is a PNG, JPEG, ... or a scanner's DICOM file (any transfer syntax, cine loops with
--frame). A DICOM's calibrated 2D tissue regions (SequenceOfUltrasoundRegions) are its scans:
each is cropped out and mapped on its own (NAME_r0, NAME_r1, ... on a dual display, or one
chosen with --region); M-mode and Doppler strips are skipped. The pixel spacing comes from the
region, PixelSpacing, ImagerPixelSpacing, --spacing or nowhere, and the JSON says which.

Without --geometry the fan is found in the image (fetal_biometry.geometry.fan: the textured region on
the black background, its straight side edges, apex and arcs; text panels, calipers, colour
bars and colour Doppler boxes are ignored). A DICOM's TransducerType and its region's
ReferencePixelX0/Y0 are priors (probe kind, a sector's apex), named in "geometry_source".
Below the confidence threshold (fetal_biometry.geometry.fan.MIN_CONFIDENCE) there is no fan, unless
--accept-fan-below C accepts fans down to C (then reported as low confidence). A scan
without a fan is still reported, with its spacing, its source and its region, and
"fan": "not found (reason)"; no beam files are written for it and the exit status is 1.
With --geometry the probe comes from a file: a dataset case record (cases/<case>.json, probe
under "probe") or a bare probe object, in the scan's pixels, such as
  {"type": "convex", "apex": [x, y], "start_depth": r0, "end_depth": r1, "angles": [l, r]}

Prints JSON on stdout, one object per scan (a list of them for a multi-region DICOM): the
geometry (pixels; angles in degrees from straight down, negative to the left; "clip" where
the fan runs out of the scan), its confidence (1.0 when given), pixel_spacing_mm (null when
unknown), spacing_source and region ([x0, y0, x1, y1] of the scan in the file's frame, x1 and
y1 exclusive; null for a whole image). Warnings (burned-in annotation, resampling of
non-square pixels, weak calibration) go to stderr. No patient, institution or operator
attribute of a DICOM is read. Writes into DIR, for each scan NAME:
  NAME_beam.npy   (H, W, 2) float32 unit vectors (dx, dy) of sound travel, NaN outside the fan
  NAME_beam.png   the directions as colours (hue: beam angle) over the image, with arrows
DIR may hold the maps of other scans (from earlier runs of this tool); a folder of anything
else is refused, and a scan's earlier maps are replaced only with --overwrite.

examples:
  python tools/beam_map.py scan.png --out runs/beams
  python tools/beam_map.py exam/IM_0007 --frame 12 --out runs/beams     # a DICOM cine loop
  python tools/beam_map.py dual.dcm --region 1 --out runs/beams         # right image only
  python tools/beam_map.py data/fetal/sim/images/sim00000.png \\
      --geometry data/fetal/sim/cases/sim00000.json --out runs/beams
"""
import argparse
import io
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fetal_biometry import atomic, cli, figures  # noqa: E402
from fetal_biometry.geometry import fan, probe as geom  # noqa: E402
from fetal_biometry.io import limits, scans  # noqa: E402

TOOL = "beam_map"  # the output marker of its folders (fetal_biometry.atomic.mark)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, epilog=limits.HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=pathlib.Path, metavar="IMAGE",
                        help="the scan: PNG, JPEG, ... (gray or colour) or DICOM")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE",
                        help="probe geometry JSON (case record or bare probe); "
                             "default: estimate it from the image")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                        help="folder for NAME_beam.npy and NAME_beam.png (created; maps of "
                             "other scans may be there already)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a scan's maps written by an earlier run")
    parser.add_argument("--keep-names", action="store_true",
                        help="name a DICOM file's maps after the file (default: after a hash of "
                             "its SOP Instance UID, as a scanner's file name may be the patient's)")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="frame of a DICOM cine loop, from 0 (required for loops)")
    parser.add_argument("--region", type=int, metavar="K",
                        help="only the K-th calibrated 2D tissue region of a DICOM, from 0 "
                             "(default: every one)")
    parser.add_argument("--accept-fan-below", type=cli.confidence, metavar="C",
                        help=f"use an estimated fan whose confidence is below the threshold "
                             f"({fan.MIN_CONFIDENCE:g}) but at least C, marked low-confidence")
    parser.add_argument("--spacing", type=cli.spacing_mm, metavar="MM",
                        help="pixel spacing in mm, for files without calibration (an error "
                             "where it disagrees with the file's by more than 1%%)")
    return parser


def summary(scan: scans.ScanImage, found: fan.Estimate) -> dict:
    """The printed JSON of one scan: its name, pixel spacing, its source and the scan's
    region, always; the fan ("found", "low confidence", "given" or "not found (reason)"), its source and
    confidence; where there is one, probe kind, apex, depths, edge angles and full geometry."""
    probe = found.geometry
    record = {"name": scan.name, "pixel_spacing_mm": scan.spacing_mm,
              "spacing_source": scan.spacing_source,
              "region": list(scan.region) if scan.region is not None else None,
              "fan": f"not found ({found.reason})" if probe is None else
              "given" if found.source.startswith("given") else
              "low confidence" if found.low_confidence else "found",
              "confidence": None if found.confidence is None else round(found.confidence, 4),
              "geometry_source": found.source, "priors": found.priors}
    if probe is None:
        return record
    edges = list(probe.angles) if isinstance(probe, geom.ConvexProbe) else [probe.angle] * 2
    return {**record, "probe": "convex" if isinstance(probe, geom.ConvexProbe) else "linear",
            "apex": list(probe.apex) if isinstance(probe, geom.ConvexProbe) else None,
            "start_depth": probe.start_depth, "end_depth": probe.end_depth,
            "edges_deg": edges, "geometry": geom.to_dict(probe)}


def _write(out: pathlib.Path, stem: str, gray: np.ndarray, directions: np.ndarray) -> None:
    atomic.mark(out, TOOL)
    buffer = io.BytesIO()
    np.save(buffer, directions)
    atomic.write_bytes(out / f"{stem}_beam.npy", buffer.getvalue())
    atomic.write_bytes(out / f"{stem}_beam.png", scans.encode_png(figures.beam_picture(gray, directions)))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        atomic.claim_output(args.out, TOOL, [args.image] + ([args.geometry] if args.geometry else []),
                            overwrite=True, option="--out")  # a folder of its maps may grow
        found = scans.read_scans(args.image, args.frame, args.region, args.spacing, args.keep_names)
    except atomic.OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except scans.ScanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    earlier = [f"{scan.name}_beam.png" for scan in found if (args.out / f"{scan.name}_beam.png").exists()]
    if earlier and not args.overwrite:
        print(f"error: {args.out}: holds {', '.join(earlier)} from an earlier run; pass --overwrite "
              "to replace, or choose another --out", file=sys.stderr)
        return 1
    results = []
    for scan in found:
        try:
            estimate = fan.probe_of(scan.rgb, scan.transducer, scan.reference_pixel, args.geometry,
                                    args.accept_fan_below)
            results.append((scan, estimate))
        except ValueError as error:  # the geometry file's problem, naming it
            print(f"error: {error}", file=sys.stderr)
            return 2
    missing = 0
    for scan, estimate in results:
        where = args.image if len(found) == 1 else f"{args.image} ({scan.name})"
        for warning in scan.warnings:
            print(f"warning: {scan.name}: {warning}", file=sys.stderr)
        if estimate.geometry is None:
            missing += 1
            print(f"error: {where}: no fan found: {estimate.reason}; the spacing "
                  f"({scan.spacing_source}) is reported without it. Pass --geometry FILE, or "
                  "--accept-fan-below C to use a weaker fan", file=sys.stderr)
            continue
        if estimate.low_confidence:
            print(f"warning: {where}: {estimate.source}", file=sys.stderr)
        _write(args.out, scan.name, scan.gray, geom.beam_directions(estimate.geometry, scan.gray.shape))
    report = [summary(*result) for result in results]
    print(json.dumps(report[0] if len(report) == 1 else report, indent=2))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
