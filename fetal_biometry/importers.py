"""Annotations in: labelling tools' exports and HC18's public layout -> the dataset format.

One small reader per format turns its files into :class:`Annotation` records (shapes in the
project's coordinates: pixel centres at integers); one builder (:func:`build_case`) turns an
annotation, its image, pixel spacing and probe geometry into a :class:`dataset.Case`;
:func:`import_dataset` gathers every problem of every image first and writes the dataset
(aside, then renamed) only when there are none.

Formats (:data:`FORMATS`)
-------------------------
``cvat``
    CVAT "for images 1.1" XML (``annotations.xml``): ``<image name width height>`` holding
    ``<polygon points="x,y;x,y">``, ``<ellipse cx cy rx ry rotation>``, ``<polyline>``,
    ``<box xtl ytl xbr ybr rotation>``, ``<mask rle left top width height>`` (run lengths over
    the mask's box, row by row, starting with a run of zeros) and image-level ``<tag>``; shapes
    are drawn in ``z_order``, ties in the class order below. Coordinates are continuous with
    the image's top-left corner at (0, 0), so a pixel centre sits at +0.5.
    Not supported: ``<points>``, ``<cuboid>``, ``<skeleton>`` and video tracks (an error
    names them, unless --classes maps their label to null).
``labelme``
    A folder of LabelMe JSON files: ``shapes`` of ``shape_type`` polygon, rectangle, circle
    (centre and a rim point), line / linestrip (outlines, see polylines below) and mask
    (``points`` its box, ``mask`` a base64 PNG); ``imagePath`` relative to the JSON; shapes
    drawn in list order; image-level ``flags``. Coordinates as on LabelMe's canvas (pixel
    centres at +0.5). Not supported: ``point`` shapes; ``imageData`` is not read (the image
    file is).
``coco``
    COCO instances JSON: ``images``, ``categories`` (by name) and ``annotations`` whose
    ``segmentation`` is a list of polygons, an RLE (``counts`` a list) or a compressed RLE
    (``counts`` a string), both column-major over ``size`` [h, w]. COCO has no drawing order:
    overlaps are layered by the class order below. Coordinates as CVAT's. The plane verdict
    may ride on an image entry as extra fields ``plane_acceptable`` (boolean) and
    ``plane_reason``. ``bbox``, ``area``, ``keypoints`` and ``iscrowd`` are not used.
``masks``
    A folder of label-map PNGs (``STEM.png`` for image ``STEM``) and a JSON map from their
    values to class names (``--values``; default the dataset's own table, 255 ignored).
``hc18``
    HC18's layout: ``NNN_HC.png`` beside its ``NNN_HC_Annotation.png`` (the skull's ellipse
    drawn as a ring), pixel sizes from ``--spacing-csv``. The ring's pixels are fitted to an
    ellipse (the residual recorded); the case is a head plane (see :mod:`fetal_biometry.dataset`)
    and its label map holds background inside the fan and 255 outside.

Labels, layers, biometry
------------------------
A shape's label maps to a class of the table by ``classes`` (``--classes MAP.json``, e.g.
``{"SB": "stomach_bubble", "calipers": null}``; null ignores the label), else by the table's
own names, case-insensitive. Overlapping regions are painted in :data:`LAYERS` order:
background, amniotic fluid, abdomen, shadow, spine, rib, stomach bubble, umbilical vein on top
(so an outer-contour polygon of a region containing smaller ones is fine). Pixels outside the
probe's fan become 255; a shape reaching more than the format's tolerance
(:data:`FAN_TOLERANCE_PX`) outside the fan is an error, not silently cut.

Exactly one abdomen per image: an ellipse gives the AC ellipse exactly; a polygon, polyline
(an outline, e.g. the visible stretch of skin) or mask is fitted (:func:`ellipse.fit`, the
RMS residual recorded; a mask's outline is taken along its pixel edges against background
or fluid only: elsewhere, against shadow, an organ, the fan's edge or the image border, it
is no skin line). A polyline of another label is an error: regions need areas. The plane
verdict comes from an image-level tag or attribute ``plane_acceptable`` /
``plane_unacceptable`` (CVAT: a ``<tag>`` with a ``reason`` attribute, or a shape attribute
``plane_acceptable`` true/false with ``plane_reason``; LabelMe: a flag), else it is derived:
acceptable when both a stomach bubble and an umbilical vein are annotated inside the
abdomen ellipse, the reason written either way. Only abdominal planes come from the tools'
formats; head planes only from HC18.

Images, spacing, probe
----------------------
Images are read by :func:`fetal_biometry.scans.read_scans`: PNG, JPEG, ... or DICOM (``frame``
of a cine loop). A DICOM scan in a calibrated ultrasound region is cropped to it and the
annotations, drawn on the whole frame, move with the crop; a file of several regions, or
with non-square pixels (resampled by the reader), is refused. The spacing comes from the
CSV (HC18's convention), else ``spacing_mm`` for all, either checked against a DICOM's own
calibration, which serves when neither is given. The probe geometry (of the scan as read,
i.e. of the crop) comes from one JSON for all or a folder of ``STEM.json``, else from
:func:`fetal_biometry.fan.estimate_geometry` (a note says so, with its confidence).
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
import xml.etree.ElementTree as ElementTree
from typing import Callable, Iterable

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry import (__version__, atomic, dataset, dicom, ellipse as ell, fan, paths,
                            geometry as geom, scans)
from fetal_biometry.ellipse import Ellipse
from fetal_biometry.labels import (ABDOMEN, BACKGROUND, CLASSES, FLUID, OUTSIDE, RIB, SHADOW,
                                   SPINE, STOMACH, VEIN)

FORMATS = ("cvat", "labelme", "coco", "masks", "hc18")
GENERATOR = "fetal_biometry.importers"
#: Painting order of overlapping regions: later ones on top.
LAYERS = (BACKGROUND, FLUID, ABDOMEN, SHADOW, SPINE, RIB, STOMACH, VEIN)
#: How far (px) an annotation may reach outside the probe's fan before it is an error.
FAN_TOLERANCE_PX = {"cvat": 3.0, "labelme": 3.0, "coco": 3.0, "masks": 2.0, "hc18": math.inf}
IMAGE_TOLERANCE_PX = 1.0  # vertices this far beyond the image border are still "on" it
ACCEPTABLE, UNACCEPTABLE = "plane_acceptable", "plane_unacceptable"
HC18_REASON = "HC18: the plane in which the head circumference was measured"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".bmp", ".tif", ".tiff")


class AnnotationError(ValueError):
    """Annotations that cannot be imported; the message lists every problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Shape:
    """One annotated shape, in project coordinates (pixel centres at integers).

    ``kind`` is 'polygon' (``rings``: one or more closed (N, 2) outlines), 'polyline'
    (``rings[0]``: an open outline), 'ellipse', 'mask' (bool, the annotated image size) or
    'ring' (HC18: ``mask`` holds the drawn ring), or 'invalid' (``problem`` says why; reported
    unless its label is ignored). ``order`` is the drawing order where the
    format has one (CVAT z_order, LabelMe list position).
    """

    where: str
    label: str
    kind: str
    order: float = 0.0
    rings: tuple[np.ndarray, ...] = ()
    ellipse: Ellipse | None = None
    mask: np.ndarray | None = None
    problem: str | None = None  # what the reader could not make of it (kind 'invalid')


@dataclasses.dataclass(frozen=True, eq=False)
class Annotation:
    """One image's annotations as a reader found them."""

    file: str  # the annotation file, for messages
    image: pathlib.Path  # as the annotation names it, joined to ``folder``
    folder: pathlib.Path  # the folder the user named for the images: ``image`` must lie inside
    size: tuple[int, int] | None  # (width, height) the annotation says, when it says
    shapes: tuple[Shape, ...]
    plane: tuple[bool, str] | None = None  # from a tag, attribute or flag
    layered: bool = True  # shapes carry a drawing order; else the class order decides
    structure: str = "abdomen"


Read = tuple[list[Annotation], list[str]]  # what a reader returns: annotations and problems


# --------------------------------------------------------------------------- small helpers

def _corner(points: Iterable[Iterable[float]]) -> np.ndarray:
    """Tool coordinates (pixel corners at integers) -> project coordinates (centres)."""
    return np.asarray(points, float).reshape(-1, 2) - 0.5


def _plane_tag(label: str, reason: str | None) -> tuple[bool, str] | None:
    label = label.strip().lower()
    if label == ACCEPTABLE:
        return True, reason or "marked plane_acceptable in the annotations"
    if label == UNACCEPTABLE:
        return False, reason or "marked plane_unacceptable in the annotations"
    return None


def _truth(value) -> bool | None:
    """A tool's boolean attribute (true / false / yes / no / 1 / 0, any case), or None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text)


def _plane_attributes(attributes: dict, where: str, problems: list[str]) -> tuple[bool, str] | None:
    """A plane verdict from attributes ``plane_acceptable`` (+ ``plane_reason``), or None."""
    if ACCEPTABLE not in attributes:
        return None
    verdict = _truth(attributes[ACCEPTABLE])
    if verdict is None:
        problems.append(f"{where}: attribute {ACCEPTABLE}={attributes[ACCEPTABLE]!r} is not a boolean")
        return None
    default = "marked plane_acceptable" if verdict else "marked plane not acceptable"
    return verdict, str(attributes.get("plane_reason") or f"{default} in the annotations")


def _finite(values: list[float], where: str) -> list[float]:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: coordinates must be finite numbers")
    return values


def sha256(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- CVAT

def _cvat_points(text: str, where: str) -> np.ndarray:
    try:
        pairs = [tuple(float(v) for v in pair.split(",")) for pair in text.strip().split(";") if pair]
    except ValueError:
        raise ValueError(f"{where}: points {text[:40]!r} are not 'x,y;x,y;...'") from None
    if not all(len(p) == 2 for p in pairs):
        raise ValueError(f"{where}: points {text[:40]!r} are not 'x,y;x,y;...'")
    return _corner(_finite([v for p in pairs for v in p], where))


def _runs(counts: list[int], width: int, height: int) -> np.ndarray:
    """Alternating runs of False and True (False first) filling width x height pixels, flat."""
    counts = np.asarray(counts, np.int64)
    if (counts < 0).any() or counts.sum() != width * height:
        raise ValueError(f"run lengths sum to {int(counts.sum())}, not the mask's "
                         f"{width}x{height} = {width * height} pixels")
    return np.repeat(np.arange(len(counts)) % 2 == 1, counts)


def cvat_rle_decode(counts: list[int], width: int, height: int) -> np.ndarray:
    """CVAT's mask RLE as a bool (height, width) mask: runs row by row, zeros first."""
    return _runs(counts, width, height).reshape(height, width)


def _cvat_shape(node: ElementTree.Element, where: str, size: tuple[int, int]) -> Shape:
    """One CVAT shape element; ValueError says what is wrong with it."""
    kind, attrib = node.tag, node.attrib
    label, order = attrib.get("label", ""), float(attrib.get("z_order", 0) or 0)

    def number(key: str, default: float | None = None) -> float:
        if key not in attrib and default is not None:
            return default
        if key not in attrib:
            raise ValueError(f"lacks attribute {key!r}")
        try:
            return _finite([float(attrib[key])], f"attribute {key}")[0]
        except ValueError:
            raise ValueError(f"attribute {key}={attrib[key]!r} is not a finite number") from None

    if kind in ("polygon", "polyline"):
        return Shape(where, label, kind, order, rings=(_cvat_points(attrib.get("points", ""), "points"),))
    if kind == "ellipse":
        cx, cy, rx, ry, rotation = (number(k, 0.0 if k == "rotation" else None)
                                    for k in ("cx", "cy", "rx", "ry", "rotation"))
        if min(rx, ry) <= 0:
            raise ValueError(f"radii must be positive, got rx={rx}, ry={ry}")
        angle = rotation if rx >= ry else rotation + 90  # CVAT: rotation clockwise on screen
        return Shape(where, label, kind, order,
                     ellipse=Ellipse(cx - 0.5, cy - 0.5, max(rx, ry), min(rx, ry), angle % 180))
    if kind == "box":
        x0, y0, x1, y1, rotation = (number(k, 0.0 if k == "rotation" else None)
                                    for k in ("xtl", "ytl", "xbr", "ybr", "rotation"))
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        t = math.radians(rotation)
        turn = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - centre
        return Shape(where, label, "polygon", order, rings=(_corner(corners @ turn.T + centre),))
    if kind == "mask":
        left, top, width, height = (int(number(k)) for k in ("left", "top", "width", "height"))
        try:
            counts = [int(v) for v in attrib.get("rle", "").split(",") if v.strip()]
        except ValueError:
            raise ValueError("rle is not comma-separated integers") from None
        box = cvat_rle_decode(counts, width, height)
        if left < 0 or top < 0 or left + width > size[0] or top + height > size[1]:
            raise ValueError(f"the mask's box at ({left}, {top}), {width}x{height}, reaches outside "
                             f"the {size[0]}x{size[1]} image")
        mask = np.zeros(size[::-1], bool)
        mask[top:top + height, left:left + width] = box
        return Shape(where, label, kind, order, mask=mask)
    raise ValueError(f"CVAT <{kind}> shapes are not supported (use polygons, ellipses, polylines, "
                     "boxes or masks, or map the label to null with --classes)")


def read_cvat(path: pathlib.Path, images: pathlib.Path) -> Read:
    """Annotations of a CVAT "for images 1.1" XML export; images are found under ``images``."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        return [], [f"{path}: not a readable XML file ({error})"]
    if root.tag != "annotations":
        return [], [f"{path}: root element is <{root.tag}>, not CVAT's <annotations>"]
    problems = []
    if root.find("track") is not None:
        problems.append(f"{path}: holds <track> elements (CVAT for video); export the task as "
                        "'CVAT for images 1.1'")
    found = []
    for node in root.findall("image"):
        name = node.get("name", "")
        where = f"{path}: image {name!r}"
        try:
            size = (int(node.get("width", "")), int(node.get("height", "")))
        except ValueError:
            problems.append(f"{where}: width / height missing or not integers")
            continue
        shapes, plane = [], None
        for index, child in enumerate(node):
            attributes = {a.get("name"): (a.text or "") for a in child.findall("attribute")}
            shape_where = f"<{child.tag}> #{index} label {child.get('label', '')!r}"
            if child.tag == "tag":
                tag = _plane_tag(child.get("label", ""), attributes.get("reason") or None)
                if tag is None:  # other tags may still be ignored through --classes
                    shapes.append(Shape(shape_where, child.get("label", ""), "invalid",
                                        problem=f"only {ACCEPTABLE} / {UNACCEPTABLE} tags are understood"))
                plane = tag or plane
                continue
            plane = _plane_attributes(attributes, f"{where}: {shape_where}", problems) or plane
            try:
                shapes.append(_cvat_shape(child, shape_where, size))
            except ValueError as error:
                shapes.append(Shape(shape_where, child.get("label", ""), "invalid", problem=str(error)))
        found.append(Annotation(str(path), images / name, images, size, tuple(shapes), plane, layered=True))
    if not found and not problems:
        problems.append(f"{path}: no <image> elements")
    return found, problems


# --------------------------------------------------------------------------- LabelMe

def _decode_png(data: str) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data, validate=True), np.uint8),
                             cv2.IMREAD_UNCHANGED)
    except (ValueError, TypeError):
        image = None
    if image is None:
        raise ValueError("'mask' is not a base64-encoded PNG")
    return image if image.ndim == 2 else image[..., 0]


def _labelme_shape(shape: dict, where: str, order: int, size: tuple[int, int]) -> Shape:
    label, kind = str(shape.get("label", "")), shape.get("shape_type") or "polygon"
    try:
        points = np.asarray(shape.get("points", []), float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError("'points' must be a list of [x, y] pairs") from None
    _finite(points.ravel().tolist(), "points")
    if kind == "polygon":
        return Shape(where, label, "polygon", order, rings=(_corner(points),))
    if kind in ("line", "linestrip"):
        return Shape(where, label, "polyline", order, rings=(_corner(points),))
    if kind == "rectangle":
        if len(points) != 2:
            raise ValueError(f"a rectangle needs 2 points, got {len(points)}")
        (x0, y0), (x1, y1) = points
        return Shape(where, label, "polygon", order,
                     rings=(_corner([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]),))
    if kind == "circle":
        if len(points) != 2:
            raise ValueError(f"a circle needs its centre and a rim point, got {len(points)} points")
        (cx, cy), rim = points
        radius = float(np.hypot(*(rim - (cx, cy))))
        if radius <= 0:
            raise ValueError("the circle's radius is zero")
        return Shape(where, label, "ellipse", order, ellipse=Ellipse(cx - 0.5, cy - 0.5, radius, radius, 0.0))
    if kind == "mask":
        if len(points) != 2:
            raise ValueError(f"a mask needs its box's 2 corners, got {len(points)} points")
        box = _decode_png(shape.get("mask") or "") > 0
        (x0, y0), (x1, y1) = points.astype(int)
        if box.shape != (y1 - y0 + 1, x1 - x0 + 1):
            raise ValueError(f"the mask is {box.shape[1]}x{box.shape[0]} but its box "
                             f"{points.tolist()} is {x1 - x0 + 1}x{y1 - y0 + 1}")
        if x0 < 0 or y0 < 0 or x1 >= size[0] or y1 >= size[1]:
            raise ValueError(f"the mask's box {points.tolist()} reaches outside the "
                             f"{size[0]}x{size[1]} image")
        mask = np.zeros(size[::-1], bool)
        mask[y0:y1 + 1, x0:x1 + 1] = box
        return Shape(where, label, "mask", order, mask=mask)
    raise ValueError(f"LabelMe {kind!r} shapes are not supported (use polygons, rectangles, "
                     "circles, lines or masks, or map the label to null with --classes)")


def _labelme_file(path: pathlib.Path, images: pathlib.Path | None) -> tuple[Annotation | None, list[str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [f"{path}: not a readable JSON file ({error})"]
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) \
            or not isinstance(data.get("imagePath"), str):
        return None, [f"{path}: not a LabelMe file (needs 'shapes' and 'imagePath')"]
    width, height = data.get("imageWidth"), data.get("imageHeight")
    size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    image_path = pathlib.PureWindowsPath(data["imagePath"]).as_posix()  # LabelMe on Windows writes '\\'
    folder = images or path.parent
    image = folder / (pathlib.Path(image_path).name if images else image_path)
    shapes, problems = [], []
    for index, shape in enumerate(data["shapes"]):
        where = f"shapes[{index}]"
        if not isinstance(shape, dict):
            problems.append(f"{path}: {where}: not an object")
            continue
        where += f" ({shape.get('shape_type') or 'polygon'} {shape.get('label')!r})"
        try:
            shapes.append(_labelme_shape(shape, where, index, size or (0, 0)))
        except ValueError as error:
            shapes.append(Shape(where, str(shape.get("label", "")), "invalid", problem=str(error)))
    flags = data.get("flags") or {}
    plane = None
    if isinstance(flags, dict):
        if flags.get(UNACCEPTABLE):
            plane = _plane_tag(UNACCEPTABLE, None)
        elif flags.get(ACCEPTABLE):
            plane = _plane_tag(ACCEPTABLE, None)
    return Annotation(str(path), image, folder, size, tuple(shapes), plane, layered=True), problems


def read_labelme(path: pathlib.Path, images: pathlib.Path | None = None) -> Read:
    """Annotations of a folder of LabelMe JSON files (or one file).

    Images are found by each file's ``imagePath``, relative to it; with ``images``, by the
    ``imagePath``'s file name in that folder.
    """
    files, problems = _listed(path, "*.json") if path.is_dir() else ([path], [])
    if not files and not problems:
        return [], [f"{path}: no LabelMe .json files"]
    found = []
    for file in files:
        annotation, more = _labelme_file(file, images)
        problems += more
        if annotation is not None:
            found.append(annotation)
    return found, problems


# --------------------------------------------------------------------------- COCO

def coco_rle_counts(text: str) -> list[int]:
    """The run lengths of COCO's compressed RLE string (the LEB128-like form of pycocotools).

    Each count is written in 5-bit groups, least significant first, as characters from '0'
    (48); bit 0x20 of a group says more follow and 0x10 of the last one carries the sign.
    From the third count on, the value stored is the difference to the count two before.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("compressed RLE ends inside a count")
            group = ord(text[position]) - 48
            if not 0 <= group < 64:
                raise ValueError(f"character {text[position]!r} is not compressed RLE")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position, shift = position + 1, shift + 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def coco_rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """A COCO RLE (zeros first, column-major over height x width) as a bool (H, W) mask."""
    return _runs(counts, width, height).reshape(width, height).T


def _coco_segmentation(segmentation, size: tuple[int, int] | None) -> tuple[str, tuple, np.ndarray | None]:
    """('polygon', rings, None) or ('mask', (), mask) from a COCO segmentation."""
    if isinstance(segmentation, list):
        rings = []
        for ring in segmentation:
            if not isinstance(ring, list) or len(ring) % 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in ring):
                raise ValueError("a polygon must be a flat list of x, y numbers")
            rings.append(_corner(_finite([float(v) for v in ring], "polygon")))
        if not rings:
            raise ValueError("empty segmentation")
        return "polygon", tuple(rings), None
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        height, width = segmentation["size"]
        if size is not None and (width, height) != size:
            raise ValueError(f"RLE size {width}x{height} differs from the image entry's {size[0]}x{size[1]}")
        counts = segmentation["counts"]
        counts = coco_rle_counts(counts) if isinstance(counts, str) else list(map(int, counts))
        return "mask", (), coco_rle_decode(counts, height, width)
    raise ValueError("segmentation must be a list of polygons or an RLE {'size', 'counts'}")


def read_coco(path: pathlib.Path, images: pathlib.Path) -> Read:
    """Annotations of a COCO instances JSON; images are found under ``images`` by file_name."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return [], [f"{path}: not a readable JSON file ({error})"]
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        return [], [f"{path}: not COCO instances (needs lists 'images', 'annotations', 'categories')"]
    problems = []
    categories = {c.get("id"): str(c.get("name")) for c in data["categories"] if isinstance(c, dict)}
    entries, shapes = {}, {}
    for entry in data["images"]:
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            problems.append(f"{path}: images: entry {entry!r:.60} lacks 'id' or 'file_name'")
            continue
        entries[entry["id"]] = entry
        shapes[entry["id"]] = []
    for index, item in enumerate(data["annotations"]):
        if not isinstance(item, dict):
            problems.append(f"{path}: annotations[{index}]: not an object")
            continue
        label = categories.get(item.get("category_id"))
        where = f"annotation id {item.get('id', index)} ({label!r})"
        if item.get("image_id") not in entries:
            problems.append(f"{path}: {where}: image_id {item.get('image_id')!r} is not in 'images'")
            continue
        entry = entries[item["image_id"]]
        size = (entry["width"], entry["height"]) if isinstance(entry.get("width"), int) \
            and isinstance(entry.get("height"), int) else None
        if label is None:
            shapes[item["image_id"]].append(Shape(where, "", "invalid",
                                                  problem=f"category_id {item.get('category_id')!r} "
                                                          "is not in 'categories'"))
            continue
        try:
            kind, rings, mask = _coco_segmentation(item.get("segmentation"), size)
            shapes[item["image_id"]].append(Shape(where, label, kind, rings=rings, mask=mask))
        except (ValueError, TypeError) as error:
            shapes[item["image_id"]].append(Shape(where, label, "invalid", problem=str(error)))
    found = []
    for key, entry in entries.items():
        plane = _plane_attributes(entry, f"{path}: image {entry['file_name']!r}", problems)
        size = (entry.get("width"), entry.get("height"))
        found.append(Annotation(str(path), images / entry["file_name"], images,
                                size if all(isinstance(v, int) for v in size) else None,
                                tuple(shapes[key]), plane, layered=False))
    return found, problems


# --------------------------------------------------------------------------- label-map masks

def read_values(path: pathlib.Path | None) -> tuple[dict[int, str | None], list[str]]:
    """The value -> class-name map of label-map masks (None: ignore); default the table's own."""
    if path is None:
        return {**{v: n for v, n in CLASSES.items()}, OUTSIDE: None}, []
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, [f"{path}: not a readable JSON file ({error})"]
    if not isinstance(data, dict):
        return {}, [f"{path}: must map label values to class names, e.g. {{\"1\": \"fluid\"}}"]
    values, problems = {}, []
    for key, name in data.items():
        if not str(key).isdigit() or int(key) > 255 or not (name is None or isinstance(name, str)):
            problems.append(f"{path}: {key!r}: {name!r}: keys must be values 0-255, names strings or null")
            continue
        values[int(key)] = name
    return values, problems


def _listed(folder: pathlib.Path, pattern: str) -> tuple[list[pathlib.Path], list[str]]:
    """The annotation files matching ``pattern`` in ``folder``; links leading out are problems."""
    files, problems = [], []
    for file in sorted(folder.glob(pattern)):
        try:
            paths.inside(folder, file.name, folder, "the annotations")
            files.append(file)
        except paths.OutsideFolder as error:
            problems.append(str(error))
    return files, problems


def _find_image(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def read_masks(path: pathlib.Path, images: pathlib.Path, values_file: pathlib.Path | None) -> Read:
    """Annotations of a folder of label-map PNGs (``STEM.png`` labels image ``STEM`` in ``images``)."""
    values, problems = read_values(values_file)
    files, more = _listed(path, "*.png") if path.is_dir() else ([], [])
    problems += more
    if not files:
        return [], problems if more else problems + [f"{path}: no label-map .png files"]
    found = []
    for file in files:
        labels = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
            problems.append(f"{file}: not a single-channel 8-bit label-map PNG")
            continue
        shapes = []
        for value in np.unique(labels).tolist():
            where = f"value {value}"
            if value not in values:
                shapes.append(Shape(where, str(value), "invalid",
                                    problem=f"not in the value map {values_file or '(the table)'}"))
            elif values[value] is not None:
                shapes.append(Shape(where, values[value], "mask", mask=labels == value))
        image = _find_image(images, file.stem)
        found.append(Annotation(str(file), image or images / f"{file.stem}.png", images,
                                labels.shape[::-1], tuple(shapes), layered=False))
    return found, problems


# --------------------------------------------------------------------------- HC18

def read_hc18(path: pathlib.Path, images: pathlib.Path | None = None) -> Read:
    """Annotations of HC18's layout: ``NNN_HC_Annotation.png`` rings beside ``NNN_HC.png``."""
    files, problems = _listed(path, "*_Annotation.png") if path.is_dir() else ([], [])
    if not files:
        return [], problems or [f"{path}: no HC18 *_Annotation.png files"]
    found = []
    for file in files:
        ring = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
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


# --------------------------------------------------------------------------- from shapes to a case

def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sign of the turn p -> q -> r for (N, 2) point arrays."""
    return np.sign((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))


def _proper_crossings(ring: np.ndarray) -> tuple[int, int] | None:
    """Indices of two edges of a closed polygon that cross each other, or None.

    Only proper crossings count: edges that touch at a vertex or overlap along a line (as the
    outlines of one-pixel-wide parts do) are not self-intersections. Pairs whose bounding
    boxes overlap are tested, a block of edges at a time (bounded memory for long outlines).
    """
    a, b = ring, np.roll(ring, -1, axis=0)
    low, high = np.minimum(a, b), np.maximum(a, b)
    n = len(ring)
    for start in range(0, n, 512):
        i = np.arange(start, min(start + 512, n))[:, None]
        j = np.arange(n)[None, :]
        near = ((low[i, 0] <= high[j, 0]) & (low[j, 0] <= high[i, 0])
                & (low[i, 1] <= high[j, 1]) & (low[j, 1] <= high[i, 1])
                & (j > i + 1) & ~((i == 0) & (j == n - 1)))  # neighbours share a vertex
        ii, jj = np.nonzero(near)
        ii += start
        cross = ((_orient(a[ii], b[ii], a[jj]) * _orient(a[ii], b[ii], b[jj]) < 0)
                 & (_orient(a[jj], b[jj], a[ii]) * _orient(a[jj], b[jj], b[ii]) < 0))
        if cross.any():
            k = int(np.argmax(cross))
            return int(ii[k]), int(jj[k])
    return None


def _shape_problems(shape: Shape, size: tuple[int, int]) -> list[str]:
    """Geometric problems of a shape on an image of ``size`` (width, height)."""
    width, height = size
    problems = []
    for ring in shape.rings:
        need = 2 if shape.kind == "polyline" else 3
        if len(ring) < need:
            problems.append(f"a {shape.kind} needs at least {need} points, has {len(ring)}")
            continue
        if shape.kind == "polygon" and (crossing := _proper_crossings(ring)) is not None:
            problems.append(f"self-intersecting polygon (edges {crossing[0]} and {crossing[1]} cross)")
        low, high = ring.min(axis=0), ring.max(axis=0)
        if (low < -IMAGE_TOLERANCE_PX).any() or high[0] > width - 1 + IMAGE_TOLERANCE_PX \
                or high[1] > height - 1 + IMAGE_TOLERANCE_PX:
            problems.append(f"reaches outside the {width}x{height} image (points from "
                            f"({low[0]:.1f}, {low[1]:.1f}) to ({high[0]:.1f}, {high[1]:.1f}))")
    if shape.ellipse is not None and not (0 <= shape.ellipse.cx <= width - 1
                                          and 0 <= shape.ellipse.cy <= height - 1):
        problems.append(f"ellipse centre ({shape.ellipse.cx:.1f}, {shape.ellipse.cy:.1f}) lies "
                        f"outside the {width}x{height} image")
    if shape.mask is not None and shape.mask.shape != (height, width):
        problems.append(f"mask is {shape.mask.shape[1]}x{shape.mask.shape[0]}, the image {width}x{height}")
    return problems


def fill_rings(rings: Iterable[np.ndarray], shape_hw: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside closed polygons (even-odd: a ring in a ring is a hole).

    A scanline fill: each edge toggles, on every pixel row it crosses (half-open in y), the
    pixels right of its crossing; the running parity along the row is the inside.
    """
    height, width = shape_hw
    toggles = np.zeros((height, width + 1), np.int32)
    for ring in rings:
        a, b = ring, np.roll(ring, -1, axis=0)
        first = np.clip(np.ceil(np.minimum(a[:, 1], b[:, 1])), 0, height).astype(int)
        stop = np.clip(np.ceil(np.maximum(a[:, 1], b[:, 1])), 0, height).astype(int)
        spans = np.maximum(stop - first, 0)
        edge = np.repeat(np.arange(len(ring)), spans)
        rows = first[edge] + np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
        t = (rows - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
        x = a[edge, 0] + t * (b[edge, 0] - a[edge, 0])
        np.add.at(toggles, (rows, np.clip(np.floor(x).astype(int) + 1, 0, width)), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def rasterize(shape: Shape, shape_hw: tuple[int, int]) -> np.ndarray:
    """The pixels a region shape covers: those whose centres lie inside it (bool (H, W))."""
    if shape.mask is not None:
        return shape.mask
    if shape.ellipse is not None:
        return ell.ellipse_mask(shape.ellipse, shape_hw)
    return fill_rings(shape.rings, shape_hw)


def edge_points(region: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Points (x, y) on the pixel edges of a region's outline (holes filled) along the skin.

    Only edges against background or amniotic fluid count: against shadow, the fan's edge or
    the image border the region's boundary is not the skin line, and against an organ or bone
    it is an inner boundary that shadow has opened to the outside.
    """
    filled = ndimage.binary_fill_holes(region)
    padded = np.pad(filled, 1)
    blocked = np.pad(~np.isin(labels, (BACKGROUND, FLUID)), 1, constant_values=True)
    points = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        neighbour = np.roll(padded, (-dy, -dx), axis=(0, 1))
        outside_blocked = np.roll(blocked, (-dy, -dx), axis=(0, 1))
        ys, xs = np.nonzero(padded & ~neighbour & ~outside_blocked)
        points.append(np.stack([xs - 1 + dx / 2, ys - 1 + dy / 2], axis=1))
    return np.concatenate(points).astype(float)


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


# --------------------------------------------------------------------------- the whole import

def class_mapper(path: pathlib.Path | None) -> tuple[Callable[[str], int | None | str], list[str]]:
    """Label name -> table value (None: ignore; a str: what is wrong), from ``--classes``.

    The map's keys are the tool's labels (exact, then case-insensitive); its values table
    names (case-insensitive) or null. Labels not in it match the table's names.
    """
    table = {name.lower(): value for value, name in CLASSES.items()}
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
                                f"({', '.join(CLASSES.values())}) or null")
    lowered = {k.lower(): v for k, v in mapping.items()}

    def value_of(label: str) -> int | None | str:
        for key, names in ((label, mapping), (label.lower(), lowered)):
            if key in names:
                target = names[key]
                return None if target is None else table.get(str(target).lower(), f"bad map entry {target!r}")
        if label.lower() in table:
            return table[label.lower()]
        return (f"unknown label {label!r}: not a class of the table ({', '.join(CLASSES.values())}); "
                "map it with --classes MAP.json (null ignores it)")

    return value_of, problems


def case_name(image: pathlib.Path) -> str:
    """The dataset case name of an image: its stem, characters other than [A-Za-z0-9._-] as '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", image.stem)
    return name if re.match(r"^[A-Za-z0-9]", name) else f"case{name}"


@dataclasses.dataclass(frozen=True)
class Options:
    """Where spacing and geometry come from, and how labels map (see :func:`import_dataset`)."""

    images: pathlib.Path | None = None
    classes: pathlib.Path | None = None
    values: pathlib.Path | None = None
    spacing_csv: pathlib.Path | None = None
    spacing_mm: float | None = None
    geometry: pathlib.Path | None = None
    fan_tolerance_px: float | None = None
    frame: int | None = None
    overwrite: bool = False
    skip_bad: bool = False  # write the images that import; list the others in the provenance
    accept_fan_below: float | None = None  # estimated fans down to this confidence are used


def read_annotations(fmt: str, path: pathlib.Path, options: Options) -> Read:
    """The annotations of ``path`` in format ``fmt`` and the problems found reading them."""
    images = options.images
    if fmt == "cvat":
        return read_cvat(path, images or path.parent)
    if fmt == "labelme":
        return read_labelme(path, images)
    if fmt == "coco":
        return read_coco(path, images or path.parent)
    if fmt == "masks":
        if images is None:
            return [], ["masks: pass --images DIR, the folder of the scans the label maps belong to"]
        return read_masks(path, images, options.values)
    if fmt == "hc18":
        return read_hc18(path, images)
    raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")


def _inputs(annotation: Annotation, options: Options, spacing: dict[str, float],
            warnings: list[str]) -> tuple[Inputs | None, list[str]]:
    """Image, spacing and geometry of one annotated image, or the problems in the way.

    The image is read by :func:`fetal_biometry.scans.read_scans` (``options.frame`` of a cine
    loop); a spacing from the CSV or ``--spacing`` is checked against a DICOM's calibration.
    """
    image_file, where = annotation.image, f"{annotation.file}: image {annotation.image.name}"
    try:  # never a file outside the images folder: '..', absolute names, symlinks out
        source = paths.inside(annotation.folder, image_file, annotation.file,
                              "the images (--images DIR, else the annotations' own folder)")
    except paths.OutsideFolder as error:
        return None, [str(error)]
    if not source.is_file():
        return None, [f"{where}: image file {image_file} not found"]
    given = spacing.get(image_file.name, options.spacing_mm)
    try:
        found = scans.read_scans(source, frame=options.frame, spacing=given)
        header = dicom.read_header(source) if found[0].region else None  # no pixels decoded
    except (scans.ScanError, ValueError) as error:
        return None, [f"{where}: {error}"]
    if len(found) > 1:
        return None, [f"{where}: holds {len(found)} calibrated scan regions "
                      f"({', '.join(s.name for s in found)}); annotate files of one scan"]
    scan = found[0]
    warnings += [f"{image_file.name}: {w}" for w in scan.warnings]
    problems = []
    if scan.region is not None:
        x0, y0, x1, y1 = scan.region
        if scan.gray.shape != (y1 - y0, x1 - x0):
            problems.append(f"{where}: its pixels are not square and were resampled; annotations "
                            "on the file's pixels cannot follow")
    if scan.spacing_mm is None:
        problems.append(f"{where}: no pixel spacing: list {image_file.name} in --spacing-csv "
                        "or give --spacing MM")
    probe = None
    if options.geometry is not None:
        try:
            file = (paths.inside(options.geometry, f"{image_file.stem}.json", options.geometry,
                                 "the probe geometries") if options.geometry.is_dir() else options.geometry)
            probe = geom.read_file(file, scan.gray.shape)
        except paths.OutsideFolder as error:
            problems.append(str(error))
        except ValueError as error:
            problems.append(f"{where}: probe geometry {error}")
    else:
        estimate = fan.estimate_scan(scan.rgb, fan.priors_from(scan.transducer, scan.reference_pixel),
                                     options.accept_fan_below)
        probe = estimate.geometry
        if probe is None:
            problems.append(f"{where}: {estimate.source}; pass --geometry FILE or "
                            "--accept-fan-below C")
        else:
            warnings.append(f"{image_file.name}: probe geometry {estimate.source}")
    if problems:
        return None, problems
    return Inputs(case_name(image_file), scan.gray, scan.spacing_mm, probe,
                  (header.columns, header.rows) if header else scan.gray.shape[::-1], scan.region), []


def _hashes(fmt: str, path: pathlib.Path, options: Options) -> dict[str, str]:
    """SHA-256 of every annotation file the import read, by name relative to ``path``."""
    if path.is_dir():
        pattern = {"labelme": "*.json", "masks": "*.png", "hc18": "*_Annotation.png"}[fmt]
        files = sorted(path.glob(pattern))
        names = {f.relative_to(path).as_posix(): f for f in files}
    else:
        names = {path.name: path}
    for extra in (options.values, options.classes, options.spacing_csv):
        if extra is not None and extra.is_file():
            names[extra.name] = extra
    return {name: sha256(file) for name, file in names.items()}


def claim_output(out: pathlib.Path, inputs: Iterable[pathlib.Path], overwrite: bool) -> list[str]:
    """Why ``out`` may not be written (:func:`fetal_biometry.atomic.claim_output`), and a
    dataset made by something else than this importer (a simulated one, say) is never replaced."""
    try:
        atomic.claim_output(out, "dataset.json", inputs, overwrite, option="--out")
    except atomic.OutputError as error:
        return [str(error)]
    if (out / "dataset.json").is_file():
        try:
            made_by = json.loads((out / "dataset.json").read_text()).get("generator", {}).get("name")
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by != GENERATOR:
            return [f"{out}: --out holds a dataset not made by the importer ({made_by or 'unknown'}); "
                    "it is never replaced: choose another folder"]
    return []


def import_dataset(fmt: str, annotations: str | os.PathLike, out: str | os.PathLike,
                   options: Options = Options(), progress=None) -> tuple[pathlib.Path, list[str]]:
    """Import ``annotations`` (format ``fmt``) as a dataset at ``out``; returns it and warnings.

    Every image is read and built before anything is written; :class:`AnnotationError` lists
    every problem (each naming the annotation file, the image and the shape) and nothing is
    written. With ``options.skip_bad`` an image with problems (no fan, no spacing, a shape out
    of the fan, ...) is left out instead and the others are written; dataset.json's
    ``source.skipped`` lists each left-out image with its problems (problems of the whole
    import, such as an unreadable class map, still stop it, as does nothing left to write). ``out`` may be a new or empty folder or, with ``options.overwrite``, a dataset this
    importer made (replaced atomically); never an input or a folder holding one. ``progress`` wraps the list of
    annotations (e.g. tqdm).
    """
    path, out = pathlib.Path(annotations), pathlib.Path(out)
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if not path.exists():
        raise AnnotationError(f"{path}: not found")
    inputs = [p for p in (path, options.images, options.geometry, options.spacing_csv) if p is not None]
    problems = claim_output(out, inputs, options.overwrite)
    classes, more = class_mapper(options.classes)
    problems += more
    spacing, circumference = {}, {}
    if options.spacing_csv is not None:
        spacing, circumference, more = read_spacing_csv(options.spacing_csv)
        problems += more
    found, more = read_annotations(fmt, path, options)
    problems += more
    tolerance = FAN_TOLERANCE_PX[fmt] if options.fan_tolerance_px is None else options.fan_tolerance_px
    warnings, cases, names, skipped = [], [], {}, []
    for annotation in (progress(found) if progress else found):
        ready, own = _inputs(annotation, options, spacing, warnings)
        case = None
        if ready is not None and ready.name in names:
            own.append(f"{annotation.file}: image {annotation.image.name}: case name {ready.name!r} "
                       f"also made from {names[ready.name]}: rename one image")
        elif ready is not None:
            names[ready.name] = annotation.image
            case, more = build_case(annotation, ready, classes, tolerance)
            own += more
        if own and options.skip_bad:
            skipped.append({"image": str(annotation.image), "annotations": str(annotation.file),
                            "reasons": own})
            continue
        problems += own
        if case is not None:
            cases.append(case)
            listed = circumference.get(annotation.image.name)
            if listed and abs(case.biometry.circumference_mm - listed) > 0.02 * listed:
                warnings.append(f"{annotation.image.name}: fitted HC {case.biometry.circumference_mm:.1f} mm "
                                f"differs from the CSV's {listed:.1f} mm")
    if not found and not problems:
        problems.append(f"{path}: no annotated images found")
    if found and not cases and skipped and not problems:
        problems.append(f"{path}: every image was skipped: " +
                        "; ".join(r for item in skipped for r in item["reasons"]))
    if problems:
        raise AnnotationError(f"{len(problems)} problem(s), nothing written:\n  " + "\n  ".join(problems))
    generator = {"name": GENERATOR, "version": __version__, "format": fmt,
                 "fan_tolerance_px": tolerance if math.isfinite(tolerance) else None,
                 "spacing": "csv" if spacing else f"{options.spacing_mm} mm" if options.spacing_mm else None,
                 "geometry": "given" if options.geometry else "estimated from each image"}
    source = {"format": fmt, "annotations": str(path), "sha256": _hashes(fmt, path, options)}
    if options.skip_bad:
        source["skipped"] = skipped
        warnings += [f"skipped {item['image']}: " + "; ".join(item["reasons"]) for item in skipped]
    dataset.write_dataset(out, cases, generator, source)
    return out, warnings
