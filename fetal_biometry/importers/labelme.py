"""A folder of LabelMe JSON files -> :class:`~fetal_biometry.importers.annotation.Annotation` records."""
from __future__ import annotations

import base64
import json
import pathlib

import numpy as np

from fetal_biometry.importers.annotation import (ACCEPTABLE, Annotation, Read, Shape, UNACCEPTABLE,
                                                 _corner, _finite, _listed, _plane_tag)
from fetal_biometry.io import scans
from fetal_biometry.measure.ellipse import Ellipse


def _decode_png(data: str) -> np.ndarray:
    try:
        png = base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        png = b""
    image = scans.imread(png) if png else None  # ValueError for a PNG bomb
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
