"""COCO instances JSON (polygons, RLE, compressed RLE) -> :class:`~fetal_biometry.importers.annotation.Annotation` records."""
from __future__ import annotations

import json
import pathlib

import numpy as np

from fetal_biometry.importers.annotation import (Annotation, Read, Shape, _corner, _finite,
                                                 _plane_attributes)
from fetal_biometry.importers.cvat import _runs


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
