#!/usr/bin/env python3
"""Images per second of the annotation importers, on one CPU core, against writing the dataset,
and how faithfully each format round-trips the simulated ground truth.

Simulated cases are exported in each format by the writers of tests/importers/test_importers.py (each
tool's documented export), then imported with the probe geometry and spacing given. The
reference is dataset.write_dataset of the same cases (PNG encoding, records, validation),
which every import ends with: the ratio shows what reading and rasterizing annotations cost
on top. Fidelity: the lowest per-class IoU inside the fan over all cases, and the median and
largest relative AC (HC) error against the simulator's ellipse. Last, the rate of
fan.estimate_geometry alone, which an import without --geometry adds for each image.

example:
  python benchmarks/bench_import.py --cases 40 --size 256 256
"""
import argparse
import csv
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # one core, before numpy loads
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import test_importers as exports  # noqa: E402  (the tools' export formats, as the tests write them)
from fetal_biometry import importers, simulator  # noqa: E402
from fetal_biometry.geometry import fan, probe as geom  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _fan_found(image) -> bool:
    try:
        fan.estimate_geometry(image)
    except fan.FanNotFound:
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40, help="cases (default 40)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="image size (default 256 256)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    cases = list(simulator.simulate(args.cases, 3, tuple(args.size), "convex"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for folder in ("images", "geometry"):
            (tmp / folder).mkdir()
        with open(tmp / "spacing.csv", "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(["filename", "pixel size(mm)"])
            for case in cases:
                cv2.imwrite(str(tmp / "images" / f"{case.name}.png"), case.image)
                (tmp / "geometry" / f"{case.name}.json").write_text(json.dumps(geom.to_dict(case.geometry)))
                rows.writerow([f"{case.name}.png", repr(case.spacing_mm)])
        exports.write_cvat(tmp / "annotations.xml", cases)
        exports.write_labelme(tmp / "labelme", cases, "../images")
        exports.write_coco(tmp / "instances.json", cases)
        exports.write_hc18(tmp / "hc18", cases)
        (tmp / "maps").mkdir()
        for case in cases:
            cv2.imwrite(str(tmp / "maps" / f"{case.name}.png"), case.labels)
        given = importers.Options(images=tmp / "images", spacing_csv=tmp / "spacing.csv",
                                  geometry=tmp / "geometry")
        runs = {"cvat": ("cvat", tmp / "annotations.xml", given),
                "labelme": ("labelme", tmp / "labelme", given),
                "coco": ("coco", tmp / "instances.json", given),
                "masks": ("masks", tmp / "maps", given),
                "hc18": ("hc18", tmp / "hc18" / "training_set",
                         importers.Options(spacing_csv=tmp / "hc18" / "training_set_pixel_size_and_HC.csv",
                                           geometry=tmp / "hc18" / "geometry"))}
        reference = _seconds(lambda: dataset.write_dataset(tmp / "reference", cases))
        print(f"{args.cases} cases of {args.size[1]}x{args.size[0]} px, one core:")
        print(f"  {'write_dataset (reference)':26s} {args.cases / reference:7.1f} images/s")
        for number, (name, (fmt, path, options)) in enumerate(runs.items()):
            out = tmp / f"out_{number}"
            seconds = _seconds(lambda: importers.import_dataset(fmt, path, out, options))
            imported = list(dataset.open(out).iter_cases())
            errors = np.array([abs(got.biometry.circumference_mm / case.biometry.circumference_mm - 1)
                               for got, case in zip(imported, cases)]) * 100
            fidelity = "" if fmt == "hc18" else \
                f"IoU >= {min(exports.iou_per_class(imported, cases).values()):.3f}, "
            print(f"  {'import ' + name:26s} {args.cases / seconds:7.1f} images/s  "
                  f"({seconds / reference:4.1f} x the reference's time; {fidelity}"
                  f"AC error median {np.median(errors):.2f} %, max {errors.max():.2f} %)")
        found = []
        seconds = _seconds(lambda: found.extend(_fan_found(case.image) for case in cases))
        print(f"  {'fan.estimate_geometry':26s} {args.cases / seconds:7.1f} images/s  (what an import "
              f"without --geometry adds per image; a fan found in {sum(found)}/{args.cases})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
