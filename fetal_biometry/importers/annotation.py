"""What every reader returns: :class:`Annotation` records of :class:`Shape` objects, the formats'
constants (:data:`FORMATS`, :data:`LAYERS`, :data:`FAN_TOLERANCE_PX`) and helpers the readers share."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib
from typing import Iterable

import numpy as np

from fetal_biometry import paths
from fetal_biometry import labels
from fetal_biometry.labels import ABDOMEN, BACKGROUND, FLUID, RIB, SHADOW, SPINE, STOMACH, VEIN
from fetal_biometry.measure.ellipse import Ellipse


FORMATS = ("cvat", "labelme", "coco", "masks", "hc18")
#: Format constant: the generator name stored in dataset.json (and compared by the experiments).
#: Frozen: it names the module as it was when the format began, not where the code lives now.
GENERATOR = "fetal_biometry.importers"
TOOL = "import_dataset"  # the output marker of imported datasets (fetal_biometry.atomic.mark)
#: Painting order of overlapping regions: later ones on top. The body's organs and the brain's
#: parts lie inside a region (abdomen, brain) and under shadow; bones lie over shadow.
LAYERS = (BACKGROUND, FLUID, ABDOMEN, labels.HEART, labels.LUNG, labels.KIDNEY, labels.BRAIN,
          labels.THALAMUS, labels.CAVUM, labels.CEREBELLUM, labels.MIDLINE, SHADOW, SPINE, RIB,
          labels.SKULL, labels.FEMUR, STOMACH, VEIN)
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
