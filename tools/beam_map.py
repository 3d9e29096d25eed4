#!/usr/bin/env python3
"""Beam directions of an ultrasound image: the probe geometry, given or read off the image.

Without --geometry the fan is found in the image (fetal_biometry.fan: the textured region on
the black background, its straight side edges, apex and arcs; text, calipers and colour bars
around it are ignored). With --geometry the probe comes from a file: a dataset case record
(cases/<case>.json, probe under "probe") or a bare probe object such as
  {"type": "convex", "apex": [x, y], "start_depth": r0, "end_depth": r1, "angles": [l, r]}

Prints the geometry as JSON on stdout (pixels; angles in degrees from straight down, negative
to the left; confidence 1.0 when given) and writes into DIR:
  <stem>_beam.npy   (H, W, 2) float32 unit vectors (dx, dy) of sound travel, NaN outside the fan
  <stem>_beam.png   the directions as colours (hue: beam angle) over the image, with arrows

example:
  python tools/beam_map.py scan.png --out runs/beams
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fetal_biometry import atomic, dataset, fan, figures, geometry as geom  # noqa: E402

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=pathlib.Path, metavar="IMAGE",
                        help="the scan: PNG, JPEG, ... (gray or colour) or DICOM (.dcm)")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE",
                        help="probe geometry JSON (case record or bare probe); "
                             "default: estimate it from the image")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                        help="folder for <stem>_beam.npy and <stem>_beam.png (created)")
    return parser


def _read_rgb(path: pathlib.Path) -> np.ndarray:
    """The image as 8-bit RGB; colour is kept, since the fan finder drops coloured overlays."""
    if not path.is_file():
        raise FileNotFoundError("no such file")
    if path.suffix.lower() == ".dcm":
        return cv2.cvtColor(dataset.read_image(path), cv2.COLOR_GRAY2RGB)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_geometry(path: pathlib.Path, shape: tuple[int, int]) -> geom.Geometry:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "probe" in data:  # a dataset case record
        data = data["probe"]
    probe = geom.from_dict(data)
    problems = geom.problems(probe, shape)
    if problems:
        raise ValueError("; ".join(problems))
    return probe


def summary(probe: geom.Geometry, confidence: float, source: str) -> dict:
    """The printed JSON: probe kind, apex, depths, edge angles, confidence, full geometry."""
    edges = list(probe.angles) if isinstance(probe, geom.ConvexProbe) else [probe.angle] * 2
    return {"probe": "convex" if isinstance(probe, geom.ConvexProbe) else "linear",
            "apex": list(probe.apex) if isinstance(probe, geom.ConvexProbe) else None,
            "start_depth": probe.start_depth, "end_depth": probe.end_depth,
            "edges_deg": edges, "confidence": round(confidence, 4), "source": source,
            "geometry": geom.to_dict(probe)}


def _write(out: pathlib.Path, stem: str, gray: np.ndarray, directions: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, directions)
    atomic.write_bytes(out / f"{stem}_beam.npy", buffer.getvalue())
    atomic.write_bytes(out / f"{stem}_beam.png", figures.png(figures.beam_picture(gray, directions)))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        rgb = _read_rgb(args.image)
    except (OSError, ValueError) as error:
        print(f"error: {args.image}: {error}", file=sys.stderr)
        return 2
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if args.geometry:
        try:
            probe, confidence, source = _read_geometry(args.geometry, gray.shape), 1.0, "given"
        except FileNotFoundError:
            print(f"error: {args.geometry}: no such file", file=sys.stderr)
            return 2
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            print(f"error: {args.geometry}: {error}", file=sys.stderr)
            return 2
    else:
        try:
            (probe, confidence), source = fan.estimate_geometry(rgb), "estimated"
        except fan.FanNotFound as error:
            print(f"error: {args.image}: no fan found: {error}", file=sys.stderr)
            return 1
    _write(args.out, args.image.stem, gray, geom.beam_directions(probe, gray.shape))
    print(json.dumps(summary(probe, confidence, source), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
