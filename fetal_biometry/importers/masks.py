"""A folder of label-map PNGs and their value -> class-name map -> :class:`~fetal_biometry.importers.annotation.Annotation` records."""
from __future__ import annotations

import json
import pathlib

import numpy as np

from fetal_biometry.importers.annotation import Annotation, Read, Shape, _find_image, _listed
from fetal_biometry.io import scans
from fetal_biometry.labels import DATASET_CLASSES, OUTSIDE


def read_values(path: pathlib.Path | None) -> tuple[dict[int, str | None], list[str]]:
    """The value -> class-name map of label-map masks (None: ignore); default the table's own."""
    if path is None:
        return {**{v: n for v, n in DATASET_CLASSES.items()}, OUTSIDE: None}, []
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


def read_masks(path: pathlib.Path, images: pathlib.Path, values_file: pathlib.Path | None) -> Read:
    """Annotations of a folder of label-map PNGs (``STEM.png`` labels image ``STEM`` in ``images``)."""
    values, problems = read_values(values_file)
    files, more = _listed(path, "*.png") if path.is_dir() else ([], [])
    problems += more
    if not files:
        return [], problems if more else problems + [f"{path}: no label-map .png files"]
    found = []
    for file in files:
        try:
            labels = scans.imread(file)
        except ValueError as error:
            problems.append(f"{file}: {error}")
            continue
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
