"""CVAT "for images 1.1" XML (``annotations.xml``) -> :class:`~fetal_biometry.importers.annotation.Annotation` records."""
from __future__ import annotations

import math
import pathlib
import xml.etree.ElementTree as ElementTree

import numpy as np

from fetal_biometry.importers.annotation import (ACCEPTABLE, Annotation, Read, Shape, UNACCEPTABLE,
                                                 _corner, _finite, _plane_attributes, _plane_tag)
from fetal_biometry.measure.ellipse import Ellipse


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
