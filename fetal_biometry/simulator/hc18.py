"""Simulated heads written in HC18's layout, to test the HC18 path without HC18.

HC18 (van den Heuvel et al., PLoS One 2018; 13:e0200412) is a public set of 1334 head scans
with the skull's outer ellipse drawn as a ring; it is not reachable from here. This writes
simulated transthalamic heads the way HC18 lays them out, so that
``tools/import_dataset.py --format hc18`` and the HC evaluation run on them::

    OUT/training_set/NNN_HC.png               the scan, 8-bit gray
    OUT/training_set/NNN_HC_Annotation.png    the skull's outer ellipse drawn as a ring
    OUT/training_set_pixel_size_and_HC.csv    filename, pixel size(mm), head circumference (mm)
    OUT/geometry/NNN_HC.json                  the probe (not in HC18: its fan is estimated there)

The CSV's HC is the exact one (HC18's is the annotators'); the ring is drawn as HC18's look,
:data:`RING_PX` wide, so importing fits it back with a small error of its own
(:func:`fetal_biometry.evaluation.metrics.hc_errors` measures it).
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Iterable

import cv2
import numpy as np

from fetal_biometry import atomic
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset, scans
from fetal_biometry.simulator.cases import TOOL

RING_PX = 2
CSV_NAME = "training_set_pixel_size_and_HC.csv"


def ring(case: dataset.Case) -> np.ndarray:
    """The skull's outer ellipse as a ring of :data:`RING_PX` pixels (255 on 0), sub-pixel placed."""
    picture = np.zeros(case.image.shape, np.uint8)
    e = case.biometry.ellipse
    cv2.ellipse(picture, (round(e.cx * 16), round(e.cy * 16)), (round(e.a * 16), round(e.b * 16)),
                e.angle, 0, 360, 255, thickness=RING_PX, lineType=cv2.LINE_8, shift=4)
    return picture


def write(out: str | os.PathLike, cases: Iterable[dataset.Case]) -> list[str]:
    """Write head cases in HC18's layout at ``out`` (written aside, then renamed); their names."""
    names = []
    with atomic.staged_dir(out) as tmp:
        atomic.mark(tmp, TOOL)
        (tmp / "training_set").mkdir()
        (tmp / "geometry").mkdir()
        rows = [["filename", "pixel size(mm)", "head circumference (mm)"]]
        for i, case in enumerate(cases):
            if case.biometry.structure != "head":
                raise ValueError(f"{case.name}: HC18's layout holds head planes, not {case.biometry.structure}")
            name = f"{i:03d}_HC"
            (tmp / "training_set" / f"{name}.png").write_bytes(scans.encode_png(case.image))
            (tmp / "training_set" / f"{name}_Annotation.png").write_bytes(scans.encode_png(ring(case)))
            (tmp / "geometry" / f"{name}.json").write_text(json.dumps(geom.to_dict(case.geometry)))
            rows.append([f"{name}.png", f"{case.spacing_mm:.9f}", f"{case.biometry.circumference_mm:.2f}"])
            names.append(name)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        (tmp / CSV_NAME).write_text(text.getvalue())
    return names
