"""One annotated image -> one :class:`fetal_biometry.io.dataset.Case`: layers painted, the fan
applied, the abdomen's ellipse fitted, the plane verdict read or derived; label names mapped to
the table's classes (``--classes``)."""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Callable

import cv2
import numpy as np

from fetal_biometry import paths
from fetal_biometry.geometry import probe as geom
from fetal_biometry.importers.annotation import Annotation, LAYERS, Shape
from fetal_biometry.importers.polygons import _shape_problems, edge_points, rasterize
from fetal_biometry.io import dataset
from fetal_biometry.labels import ABDOMEN, BACKGROUND, DATASET_CLASSES, OUTSIDE, STOMACH, VEIN
from fetal_biometry.measure import ellipse as ell
from fetal_biometry.measure.ellipse import Ellipse


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a case needs besides its annotation: image, spacing (mm) and probe geometry.

    ``image`` is the scan as read (a DICOM's calibrated region: ``region`` (x0, y0, x1, y1)
    of the file's ``frame_size`` (width, height), in which the annotations were drawn).
    """

    name: str
    image: np.ndarray
    spacing_mm: float
    geometry: geom.Geometry
    frame_size: tuple[int, int]
    region: tuple[int, int, int, int] | None = None


def _in_region(shape: Shape, region: tuple[int, int, int, int]) -> tuple[Shape, list[str]]:
    """A shape drawn on the whole frame, in the coordinates of its ``region`` crop."""
    x0, y0, x1, y1 = region
    mask, problems = shape.mask, []
    if mask is not None:
        outside = np.count_nonzero(mask) - np.count_nonzero(mask[y0:y1, x0:x1])
        if outside:
            problems.append(f"{outside} of its pixels lie outside the scan's calibrated region "
                            f"({x0}, {y0})-({x1 - 1}, {y1 - 1})")
        mask = mask[y0:y1, x0:x1]
    e = shape.ellipse
    moved = dataclasses.replace(shape, rings=tuple(r - (x0, y0) for r in shape.rings), mask=mask,
                                ellipse=e and dataclasses.replace(e, cx=e.cx - x0, cy=e.cy - y0))
    return moved, problems


def _derived_plane(labels: np.ndarray, abdomen: Ellipse) -> tuple[bool, str]:
    inside = ell.ellipse_mask(abdomen, labels.shape)
    stomach = np.count_nonzero(labels[inside] == STOMACH) > 0
    vein = np.count_nonzero(labels[inside] == VEIN) > 0
    if stomach and vein:
        return True, "stomach bubble and umbilical vein annotated inside the abdomen"
    missing = " and ".join(n for n, seen in (("stomach bubble", stomach), ("umbilical vein", vein)) if not seen)
    return False, f"no {missing} annotated inside the abdomen"


def _abdomen_ellipse(shape: Shape, region: np.ndarray, labels: np.ndarray) -> tuple[Ellipse | None, float | None, str | None]:
    """The AC ellipse of the abdomen shape, its fit residual (None: exact) and a problem."""
    if shape.kind == "ellipse":
        return shape.ellipse, None, None
    points = (np.concatenate(shape.rings) if shape.rings else edge_points(region, labels))
    fitted, rms = ell.fit(points)
    if fitted is None:
        return None, None, f"no ellipse fits its {len(points)} outline points"
    return fitted, rms, None


def build_case(annotation: Annotation, inputs: Inputs, classes: Callable[[str], int | None | str],
               fan_tolerance_px: float) -> tuple[dataset.Case | None, list[str]]:
    """One case from an annotation; None and every problem (each naming file, image, shape)."""
    height, width = inputs.image.shape
    prefix = f"{annotation.file}: image {annotation.image.name}"
    problems, painted = [], []
    sized = annotation.size is None or tuple(annotation.size) == inputs.frame_size
    if not sized:  # the shapes' coordinates mean nothing here; their labels still do
        problems.append(f"{prefix}: the image is {inputs.frame_size[0]}x{inputs.frame_size[1]} but "
                        f"the annotation says {annotation.size[0]}x{annotation.size[1]}")
    shapes = annotation.shapes
    if inputs.region is not None and sized:
        moved = [_in_region(shape, inputs.region) for shape in shapes]
        shapes = tuple(shape for shape, _ in moved)
        problems += [f"{prefix}: {shape.where}: {p}" for shape, found in moved for p in found]
    for index, shape in enumerate(shapes):
        value = classes(shape.label) if annotation.structure == "abdomen" else None
        if value is None and annotation.structure == "abdomen":
            continue  # mapped to null: ignored
        if isinstance(value, str):
            problems.append(f"{prefix}: {shape.where}: {value}")
            continue
        if shape.kind == "invalid":
            problems.append(f"{prefix}: {shape.where}: {shape.problem}")
            continue
        found = _shape_problems(shape, (width, height)) if sized else []
        if shape.kind == "polyline" and value != ABDOMEN:
            found.append("a polyline outlines no region: only an abdomen may be a polyline "
                         "(its ellipse is fitted); draw regions as polygons")
        problems += [f"{prefix}: {shape.where}: {p}" for p in found]
        if not found:
            painted.append((index, shape, value))
    if annotation.structure == "head":
        return _head_case(shapes[0].mask, annotation.plane, inputs, prefix, problems) if sized \
            else (None, problems)
    abdomens = [(index, shape) for index, shape, value in painted if value == ABDOMEN]
    named = [s.where for s in shapes if classes(s.label) == ABDOMEN]
    if len(named) > 1:
        problems.append(f"{prefix}: two abdomens ({', '.join(named)}): annotate one skin line per image")
    elif not named:
        problems.append(f"{prefix}: no abdomen annotated (the AC is measured on it)")
    if problems:
        return None, problems

    def key(item):
        index, shape, value = item
        rank = LAYERS.index(value)
        return (shape.order, rank, index) if annotation.layered else (rank, index)

    labels = np.zeros((height, width), np.uint8)
    regions = {}
    for index, shape, value in sorted(painted, key=key):
        region = rasterize(shape, (height, width)) if shape.kind != "polyline" else None
        if region is None:  # the abdomen's outline: its region is the fitted ellipse's
            fitted, _ = ell.fit(shape.rings[0])
            region = ell.ellipse_mask(fitted, (height, width)) if fitted else np.zeros_like(labels, bool)
        regions[index] = region
        labels[region] = value
    fan_mask = geom.fan_mask(inputs.geometry, (height, width))
    beyond = cv2.distanceTransform(np.where(fan_mask, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    for index, shape, value in painted:
        reach = float(beyond[regions[index]].max(initial=0.0))
        if reach > fan_tolerance_px:
            problems.append(f"{prefix}: {shape.where}: reaches {reach:.1f} px outside the probe's "
                            f"fan (tolerance {fan_tolerance_px:g} px): check the probe geometry "
                            "(--geometry) or the outline")
    labels[~fan_mask] = OUTSIDE
    index, shape = abdomens[0]
    abdomen, rms, problem = _abdomen_ellipse(shape, regions[index], labels)
    if problem:
        problems.append(f"{prefix}: {shape.where}: {problem}")
    if problems:
        return None, problems
    plane = annotation.plane or _derived_plane(labels, abdomen)
    biometry = dataset.Biometry(abdomen, ell.ellipse_perimeter(abdomen.a, abdomen.b) * inputs.spacing_mm,
                                plane[0], plane[1], None, "abdomen", rms)
    return dataset.Case(inputs.name, inputs.image, labels, inputs.geometry, inputs.spacing_mm, biometry), []


def _head_case(ring: np.ndarray, plane: tuple[bool, str], inputs: Inputs, prefix: str,
               problems: list[str]) -> tuple[dataset.Case | None, list[str]]:
    """A head plane: the ring's fitted ellipse; labels background inside the fan."""
    ys, xs = np.nonzero(ring)
    head, rms = ell.fit(np.stack([xs, ys], axis=1)) if len(xs) >= 5 else (None, math.inf)
    if head is None:
        problems.append(f"{prefix}: ring: no ellipse fits its {len(xs)} pixels")
    if problems:
        return None, problems
    fan_mask = geom.fan_mask(inputs.geometry, inputs.image.shape)
    labels = np.where(fan_mask, BACKGROUND, OUTSIDE).astype(np.uint8)
    biometry = dataset.Biometry(head, ell.ellipse_perimeter(head.a, head.b) * inputs.spacing_mm,
                                plane[0], plane[1], None, "head", rms)
    return dataset.Case(inputs.name, inputs.image, labels, inputs.geometry, inputs.spacing_mm, biometry), []


def class_mapper(path: pathlib.Path | None) -> tuple[Callable[[str], int | None | str], list[str]]:
    """Label name -> table value (None: ignore; a str: what is wrong), from ``--classes``.

    The map's keys are the tool's labels (exact, then case-insensitive); its values table
    names (case-insensitive) or null. Labels not in it match the table's names.
    """
    table = {name.lower(): value for value, name in DATASET_CLASSES.items()}
    mapping: dict[str, str | None] = {}
    problems = []
    if path is not None:
        try:
            mapping = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return (lambda label: None), [f"{path}: not a readable JSON file ({error})"]
        if not isinstance(mapping, dict):
            return (lambda label: None), [f"{path}: must map labels to class names, e.g. "
                                          '{"SB": "stomach_bubble", "calipers": null}']
        for label, name in mapping.items():
            if name is not None and (not isinstance(name, str) or name.lower() not in table):
                problems.append(f"{path}: {label!r} maps to {name!r}, not a class of the table "
                                f"({', '.join(DATASET_CLASSES.values())}) or null")
    lowered = {k.lower(): v for k, v in mapping.items()}

    def value_of(label: str) -> int | None | str:
        for key, names in ((label, mapping), (label.lower(), lowered)):
            if key in names:
                target = names[key]
                return None if target is None else table.get(str(target).lower(), f"bad map entry {target!r}")
        if label.lower() in table:
            return table[label.lower()]
        return (f"unknown label {label!r}: not a class of the table ({', '.join(DATASET_CLASSES.values())}); "
                "map it with --classes MAP.json (null ignores it)")

    return value_of, problems


def case_name(image: pathlib.Path) -> str:
    """The dataset case name of an image: its stem, characters other than [A-Za-z0-9._-] as '_'."""
    return paths.safe_name(image.stem, "case")
