"""HC18's layout (``NNN_HC_Annotation.png`` rings beside the scans) and its pixel-size CSV."""
from __future__ import annotations

import csv
import math
import pathlib
import re

import cv2

from fetal_biometry.importers.annotation import Annotation, HC18_REASON, Read, Shape, _find_image, _listed
from fetal_biometry.io import scans


def read_hc18(path: pathlib.Path, images: pathlib.Path | None = None) -> Read:
    """Annotations of HC18's layout: ``NNN_HC_Annotation.png`` rings beside ``NNN_HC.png``."""
    files, problems = _listed(path, "*_Annotation.png") if path.is_dir() else ([], [])
    if not files:
        return [], problems or [f"{path}: no HC18 *_Annotation.png files"]
    found = []
    for file in files:
        try:
            ring = scans.imread(file, cv2.IMREAD_GRAYSCALE)
        except ValueError as error:
            problems.append(f"{file}: {error}")
            continue
        if ring is None:
            problems.append(f"{file}: not a readable PNG")
            continue
        stem = file.name[:-len("_Annotation.png")]
        folder = images or path
        image = _find_image(folder, stem) or folder / f"{stem}.png"
        shape = Shape("ring", "head", "ring", mask=ring > 127)
        found.append(Annotation(str(file), image, folder, ring.shape[::-1], (shape,),
                                (True, HC18_REASON), layered=False, structure="head"))
    return found, problems


def read_spacing_csv(path: pathlib.Path) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Pixel sizes (mm) by image file name from a CSV in HC18's convention, and HC (mm) if given.

    Columns ``filename`` and ``pixel size(mm)`` (names compared without case and spaces);
    HC18's training CSV adds ``head circumference (mm)``.
    """
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return {}, {}, [f"{path}: not a readable CSV file ({error})"]
    if not rows:
        return {}, {}, [f"{path}: empty"]
    header = [re.sub(r"\s", "", h).lower() for h in rows[0]]
    if "filename" not in header or "pixelsize(mm)" not in header:
        return {}, {}, [f"{path}: needs columns 'filename' and 'pixel size(mm)', has {rows[0]}"]
    name, size = header.index("filename"), header.index("pixelsize(mm)")
    hc = header.index("headcircumference(mm)") if "headcircumference(mm)" in header else None
    spacing, circumference, problems = {}, {}, []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            value = float(row[size])
            if not math.isfinite(value) or value <= 0:
                raise ValueError
        except (ValueError, IndexError):
            problems.append(f"{path}: line {number}: pixel size {row[size:size + 1]} is not a positive number")
            continue
        key = row[name].strip()
        if key in spacing:
            problems.append(f"{path}: line {number}: {key} listed twice")
        spacing[key] = value
        if hc is not None and len(row) > hc and row[hc].strip():
            try:
                circumference[key] = float(row[hc])
            except ValueError:
                problems.append(f"{path}: line {number}: head circumference {row[hc]!r} is not a number")
    return spacing, circumference, problems
