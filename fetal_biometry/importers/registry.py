"""The readers by format name (as nnU-Net's image readers): :data:`READERS` and :func:`read_annotations`."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

from fetal_biometry.importers.annotation import FORMATS, Read
from fetal_biometry.importers.coco import read_coco
from fetal_biometry.importers.cvat import read_cvat
from fetal_biometry.importers.hc18 import read_hc18
from fetal_biometry.importers.labelme import read_labelme
from fetal_biometry.importers.masks import read_masks


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


def _cvat(path: pathlib.Path, options: Options) -> Read:
    return read_cvat(path, options.images or path.parent)


def _labelme(path: pathlib.Path, options: Options) -> Read:
    return read_labelme(path, options.images)


def _coco(path: pathlib.Path, options: Options) -> Read:
    return read_coco(path, options.images or path.parent)


def _masks(path: pathlib.Path, options: Options) -> Read:
    if options.images is None:
        return [], ["masks: pass --images DIR, the folder of the scans the label maps belong to"]
    return read_masks(path, options.images, options.values)


def _hc18(path: pathlib.Path, options: Options) -> Read:
    return read_hc18(path, options.images)


#: The reader of each format (:data:`~fetal_biometry.importers.annotation.FORMATS`), by name.
READERS: dict[str, Callable[[pathlib.Path, Options], Read]] = {
    "cvat": _cvat, "labelme": _labelme, "coco": _coco, "masks": _masks, "hc18": _hc18}


def read_annotations(fmt: str, path: pathlib.Path, options: Options) -> Read:
    """The annotations of ``path`` in format ``fmt`` and the problems found reading them."""
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")
    return READERS[fmt](path, options)
