"""The on-disk dataset of annotated fetal scans (format version 2; version 1 is still read).

The simulator (:mod:`fetal_biometry.simulator`) and the importer of labelling tools' exports
(:mod:`fetal_biometry.importers`) write this layout; every later stage reads it. In the spirit
of nnU-Net's ``dataset.json``::

    DATASET/
      dataset.json           what the dataset is (below)
      images/<case>.png      the B-mode image: 8-bit grayscale PNG (colour PNGs are converted
                             to gray on reading), or images/<case>.dcm, a DICOM file
                             (MONOCHROME1/2, RGB, YBR or PALETTE COLOR; one frame)
      labels/<case>.png      the label map: 8-bit single-channel PNG, same size as the image,
                             values from the class table
      cases/<case>.json      probe geometry, pixel spacing and biometry ground truth

``dataset.json``::

    {
      "format": "fetal-biometry-dataset",
      "version": 2,
      "classes": {"0": "background", "1": "amniotic_fluid", "2": "stomach_bubble",
                  "3": "umbilical_vein", "4": "shadow", "5": "abdomen", "6": "spine",
                  "7": "rib"},
      "outside_fan": 255,
      "cases": ["case_a", "case_b", ...],
      "generator": {...},         optional: who made the data (simulator or importer, version)
      "source": {"format": "cvat", "annotations": "annotations.xml",
                 "sha256": {"annotations.xml": "9f2c..."}}
                                  optional: the annotation files a dataset was imported from
    }

The class table (:data:`fetal_biometry.labels.DATASET_CLASSES`) is the same in versions 1 and 2
(tables written before the head and femur classes, values 0-7 only, or before the sweep's
levels, values 0-14, are read as they were):

=====  ===============  ==================================================================
value  name             meaning
=====  ===============  ==================================================================
0      background       other tissue: uterine wall, placenta, maternal tissue
1      amniotic_fluid   the fluid around the fetus
2      stomach_bubble   the fluid-filled fetal stomach
3      umbilical_vein   its intra-abdominal (intrahepatic) part
4      shadow           acoustic shadow: behind bone along the beam, where intensity is lost
5      abdomen          fetal abdominal tissue inside the skin line (wall, liver, vessels...)
6      spine            vertebral ossification centres
7      rib              ribs
8      skull            the skull's bone (head planes)
9      brain            inside the skull, but for the classes below
10     midline          the midline echo (falx)
11     femur            the femur's ossified diaphysis
12     thalamus         the thalami (landmark of the transthalamic plane)
13     cavum_septi_pellucidi  (landmark of the transthalamic plane)
14     cerebellum       (seen in the transcerebellar plane, not the transthalamic one)
15     heart            the fetal heart (thorax: above the AC plane)
16     lung             the fetal lungs (thorax)
17     kidney           the kidneys and their sinus (renal level: below the AC plane)
255    (outside_fan)    pixels outside the imaged fan: ignored
=====  ===============  ==================================================================

``cases/<case>.json`` (version 2)::

    {
      "pixel_spacing_mm": 0.62,             isotropic, mm per pixel
      "probe": {"type": "convex", "apex": [x, y], "start_depth": r0, "end_depth": r1,
                "angles": [left, right]},
               or {"type": "linear", "origin": [x, y], "width": w, "start_depth": d0,
                   "end_depth": d1, "angle": steer}
      "biometry": {
        "structure": "abdomen",             or "head": the structure measured in this plane
        "ellipse": {"center": [x, y], "semi_axes": [a, b], "angle_deg": t},
        "circumference_mm": 251.3,          the ellipse's perimeter times the spacing (AC or HC)
        "fit_rms_px": null,                 RMS distance (px) of the annotated outline to the
                                            ellipse when it was fitted; null when drawn exact
        "plane_acceptable": true,           fit for measuring the circumference
        "plane_reason": "...",              why (or why not)
        "gestational_age_weeks": 30.2       or null when unknown
      }
    }

Version 1 records hold ``"abdomen_ellipse"`` and ``"ac_mm"`` instead of ``structure``,
``ellipse``, ``circumference_mm`` and ``fit_rms_px``: every version 1 case is an abdomen.

**Simulated head and femur planes** (:mod:`fetal_biometry.simulator.planes`) carry the classes
8-14 below, and ``"measurements": {"HC": ..., "OFD": ..., "BPD_OO": ..., "BPD_OI": ...}`` or
``{"FL": ...}`` (mm, exact) in their biometry; a femur plane's ``ellipse`` and
``circumference_mm`` are null.

**Head planes** (``"structure": "head"``, e.g. HC18) carry the skull's ellipse and the head
circumference. Their label map holds only background (0) inside the fan and 255 outside: HC18
outlines nothing but the skull's ellipse, which the record already holds
(:func:`fetal_biometry.measure.ellipse.ellipse_mask` fills it when a mask is wanted). The patch
classifier's classes do not apply to them, so :mod:`fetal_biometry.patches.records` and
:mod:`fetal_biometry.evaluation.scans` refuse head planes.

Coordinates are pixels with pixel centres at integers, ``x`` the column and ``y`` the row;
probe fields follow :mod:`fetal_biometry.geometry.probe` (depths in pixels, angles in degrees from
straight down, negative to the left). The ellipse follows
:class:`fetal_biometry.measure.ellipse.Ellipse`: semi-axes ``a >= b`` in pixels, ``angle_deg`` the
direction of the ``a`` axis from +x towards +y, in [0, 180); it traces the skin line (or the
skull's outer edge), where the circumference is measured. Labels must be 255 exactly outside
the fan (up to :data:`FAN_TOLERANCE` of the fan's area, for hand-drawn masks).

Reading: :func:`open` checks dataset.json, every case record and that every file is there
(cheap: no pixels decoded) and raises :class:`DatasetError` listing every problem;
:meth:`Dataset.read` then decodes and checks one case, :meth:`Dataset.iter_cases` each case
once. :func:`validate` lists every problem of a whole dataset, pixels included.
:func:`write_dataset` writes a dataset atomically
(:func:`fetal_biometry.figures.contact_sheet` draws scans beside their labels).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from fetal_biometry import atomic, paths
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import scans
from fetal_biometry.labels import CLASSES, DATASET_CLASSES, HEAD_FEMUR_CLASSES, OUTSIDE
from fetal_biometry.measure.ellipse import Ellipse, ellipse_perimeter, record as ellipse_record

FORMAT = "fetal-biometry-dataset"
VERSION = 2
READABLE = (1, 2)
#: Sizes of the class tables a dataset.json may hold: the table grew at its end (abdomen's
#: eight; + head and femur; + the sweep's levels).
READ_TABLES = (len(CLASSES), len(CLASSES) + len(HEAD_FEMUR_CLASSES), len(DATASET_CLASSES))
STRUCTURES = ("abdomen", "head", "femur")

FAN_TOLERANCE = 0.01  # share of the fan where labels may disagree with it (hand-drawn edges)
AC_TOLERANCE = 0.01  # relative disagreement allowed between the circumference and the ellipse
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class Biometry:
    """Biometry ground truth of one case: the structure's ellipse (px), circumference, plane verdict.

    ``fit_rms_px`` is the RMS distance of the annotated outline to the ellipse when the ellipse
    was fitted to it (polygon, mask outline, HC18 ring), None when it was drawn or simulated.
    A femur plane has no ellipse nor circumference (both None). ``measurements`` holds the
    exact measurements where they are known (simulated planes), in mm, by the keys of
    :data:`fetal_biometry.measure.growth.MEASUREMENTS` (``HC``, ``OFD``, ``BPD_OO``, ``BPD_OI``, ``FL``).
    """

    ellipse: Ellipse | None
    circumference_mm: float | None
    plane_acceptable: bool
    plane_reason: str
    gestational_age_weeks: float | None
    structure: str = "abdomen"
    fit_rms_px: float | None = None
    measurements: dict | None = None

    @property
    def ac_mm(self) -> float | None:
        """The abdominal circumference (mm); None for other structures."""
        return self.circumference_mm if self.structure == "abdomen" else None


@dataclasses.dataclass(frozen=True, eq=False)
class Scan:
    """One labelled scan: gray image and label map (H, W) uint8, probe geometry, spacing (mm/px);
    what the patch records are cut from (:mod:`fetal_biometry.patches.records`)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    geometry: geom.Geometry
    spacing_mm: float


@dataclasses.dataclass(frozen=True, eq=False)
class Case(Scan):
    """One annotated scan of a dataset: a :class:`Scan` and its biometry."""

    biometry: Biometry


class DatasetError(ValueError):
    """A dataset that cannot be used; the message lists every problem, each with its case."""


# --------------------------------------------------------------------------- images

def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as 8-bit gray (H, W): PNG (any depth, gray or colour) or DICOM (one frame).

    Read by :func:`fetal_biometry.io.scans.read_frame`, the one decoder of scan files: colour is
    converted to gray with the ITU-R 601 luma weights, DICOM palette images go through their
    lookup table first, MONOCHROME1 is inverted. ValueError if unreadable.
    """
    return cv2.cvtColor(scans.read_frame(path), cv2.COLOR_RGB2GRAY)


def _read_labels(path: pathlib.Path) -> np.ndarray:
    labels = scans.imread(path)
    if labels is None:
        raise ValueError("not a readable image")
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"must be a single-channel 8-bit PNG, got {labels.dtype} "
                         f"of shape {labels.shape}")
    return labels


# --------------------------------------------------------------------------- case records

def case_record(case: Case) -> dict:
    """The JSON form (version 2) of a case's probe, spacing and biometry (``cases/<case>.json``)."""
    bio, e = case.biometry, case.biometry.ellipse
    record = {"pixel_spacing_mm": case.spacing_mm,
              "probe": geom.to_dict(case.geometry),
              "biometry": {"structure": bio.structure,
                           "ellipse": None if e is None else ellipse_record(e),
                           "circumference_mm": bio.circumference_mm,
                           "fit_rms_px": bio.fit_rms_px,
                           "plane_acceptable": bio.plane_acceptable,
                           "plane_reason": bio.plane_reason,
                           "gestational_age_weeks": bio.gestational_age_weeks}}
    if bio.measurements is not None:  # absent otherwise: older records are written as they were
        record["biometry"]["measurements"] = dict(bio.measurements)
    return record


def _field(data: dict, key: str, kind: type | tuple, where: str):
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{where} lacks {key!r}")
    value = data[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ValueError(f"{where}.{key} has the wrong type: {value!r}")
    return value


def _numbers(data: dict, key: str, count: int, where: str) -> list[float]:
    value = _field(data, key, list, where)
    if len(value) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) for v in value):
        raise ValueError(f"{where}.{key} must be {count} finite numbers, got {value!r}")
    return [float(v) for v in value]


def _positive(data: dict, key: str, where: str) -> float:
    value = _field(data, key, (int, float), where)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}.{key} must be a positive number, got {value!r}")
    return float(value)


def _ellipse(shape: dict, where: str) -> Ellipse:
    (cx, cy), (a, b) = _numbers(shape, "center", 2, where), _numbers(shape, "semi_axes", 2, where)
    angle = float(_field(shape, "angle_deg", (int, float), where))
    if not a >= b > 0 or not 0 <= angle < 180:
        raise ValueError(f"{where} needs semi_axes a >= b > 0 and 0 <= angle_deg < 180, "
                         f"got {[a, b]} and {angle}")
    return Ellipse(cx, cy, a, b, angle)


def parse_case_record(data: dict, version: int = VERSION) -> tuple[geom.Geometry, float, Biometry]:
    """Probe geometry, spacing (mm) and biometry from a case record of format ``version``.

    ValueError names the field.
    """
    spacing = _positive(data, "pixel_spacing_mm", "case")
    try:
        probe = geom.from_dict(_field(data, "probe", dict, "case"))
    except ValueError as error:
        raise ValueError(f"probe: {error}") from None
    bio = _field(data, "biometry", dict, "case")
    if version == 1:
        structure, fit_rms = "abdomen", None
        ellipse = _ellipse(_field(bio, "abdomen_ellipse", dict, "biometry"), "biometry.abdomen_ellipse")
        circumference = _positive(bio, "ac_mm", "biometry")
    else:
        structure = _field(bio, "structure", str, "biometry")
        if structure not in STRUCTURES:
            raise ValueError(f"biometry.structure must be one of {STRUCTURES}, got {structure!r}")
        if structure == "femur":  # a femur plane has no ellipse
            ellipse, circumference = None, None
        else:
            ellipse = _ellipse(_field(bio, "ellipse", dict, "biometry"), "biometry.ellipse")
            circumference = _positive(bio, "circumference_mm", "biometry")
        fit_rms = _field(bio, "fit_rms_px", (int, float, type(None)), "biometry")
        fit_rms = None if fit_rms is None else float(fit_rms)
    age = _field(bio, "gestational_age_weeks", (int, float, type(None)), "biometry")
    measurements = None
    if "measurements" in bio:
        measurements = _field(bio, "measurements", dict, "biometry")
        measurements = {k: _positive(measurements, k, "biometry.measurements") for k in measurements}
    return probe, spacing, Biometry(
        ellipse=ellipse, circumference_mm=circumference,
        plane_acceptable=_field(bio, "plane_acceptable", bool, "biometry"),
        plane_reason=_field(bio, "plane_reason", str, "biometry"),
        gestational_age_weeks=None if age is None else float(age),
        structure=structure, fit_rms_px=fit_rms, measurements=measurements)


def _consistency(probe: geom.Geometry, spacing: float, bio: Biometry, image: np.ndarray,
                 labels: np.ndarray) -> list[str]:
    """Problems between a case's image, labels, geometry and biometry."""
    if labels.shape != image.shape:
        return [f"label map is {labels.shape[1]}x{labels.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"]
    found = []
    unknown = sorted(set(np.unique(labels).tolist()) - set(DATASET_CLASSES) - {OUTSIDE})
    if unknown:
        found.append(f"unknown label values {unknown} (allowed: {sorted(DATASET_CLASSES)} and {OUTSIDE})")
    geometry_problems = geom.problems(probe, image.shape)
    found += [f"probe: {p}" for p in geometry_problems]
    if not geometry_problems:
        fan = geom.fan_mask(probe, image.shape)
        wrong = int(np.count_nonzero(fan == (labels == OUTSIDE)))
        if wrong > FAN_TOLERANCE * fan.sum():
            found.append(f"labels disagree with the probe's fan in {wrong} pixels (label "
                         f"{OUTSIDE} must mark exactly the pixels outside the fan)")
    e = bio.ellipse
    if e is None:  # a femur plane
        return found
    if not (0 <= e.cx < image.shape[1] and 0 <= e.cy < image.shape[0]):
        found.append(f"{bio.structure} ellipse centre ({e.cx:.1f}, {e.cy:.1f}) lies outside the image")
    expected = ellipse_perimeter(e.a, e.b) * spacing
    if abs(bio.circumference_mm - expected) > AC_TOLERANCE * expected:
        found.append(f"circumference {bio.circumference_mm:.1f} mm disagrees with the ellipse's "
                     f"perimeter {expected:.1f} mm")
    return found


def _attempt(found: list[str], name: str, file: str, read: Callable[[], object]):
    """``read()``, or None with the problem (naming case and file) appended to ``found``."""
    try:
        return read()
    except FileNotFoundError:
        found.append(f"{name}: missing {file}")
    except json.JSONDecodeError as error:  # before ValueError, its base class
        found.append(f"{name}: {file}: not valid JSON ({error})")
    except ValueError as error:
        found.append(f"{name}: {file}: {error}")
    return None


Record = tuple[geom.Geometry, float, Biometry]


def _image_file(root: pathlib.Path, name: str, found: list[str]) -> pathlib.Path | None:
    """The case's one image file, or None with the problem appended to ``found``."""
    images = [p for p in (root / "images" / f"{name}{ext}" for ext in (".png", ".dcm")) if p.is_file()]
    if not images:
        found.append(f"{name}: missing images/{name}.png (or .dcm)")
    elif len(images) > 1:
        found.append(f"{name}: both images/{name}.png and images/{name}.dcm exist; keep one")
    else:
        return _inside(root, images[0], name, found)
    return None


def _inside(root: pathlib.Path, file: pathlib.Path, name: str, found: list[str]) -> pathlib.Path | None:
    """``file`` of the dataset at ``root``, resolved, or None when a symlink leads out of it."""
    try:
        return paths.inside(root, file.relative_to(root), root, "its cases")
    except paths.OutsideFolder as error:
        found.append(f"{name}: {error}")
        return None


def _check_case(root: pathlib.Path, name: str, version: int) -> tuple[Record | None, list[str]]:
    """The case's parsed record and the problems found without decoding pixels."""
    found: list[str] = []
    _image_file(root, name, found)
    if not (root / "labels" / f"{name}.png").is_file():
        found.append(f"{name}: missing labels/{name}.png")
    record_file = _inside(root, root / "cases" / f"{name}.json", name, found)
    record = record_file and _attempt(found, name, f"cases/{name}.json",
                                      lambda: parse_case_record(json.loads(record_file.read_text()), version))
    return (None if found else record), found


def _decode_case(root: pathlib.Path, name: str, record: Record) -> tuple[Case | None, list[str]]:
    """Decode a checked case's image and label map and check them against its record."""
    found: list[str] = []
    image_file = _image_file(root, name, found)
    image = image_file and _attempt(found, name, f"images/{image_file.name}",
                                    lambda: read_image(image_file))
    labels_file = _inside(root, root / "labels" / f"{name}.png", name, found)
    labels = labels_file and _attempt(found, name, f"labels/{name}.png", lambda: _read_labels(labels_file))
    if found:
        return None, found
    probe, spacing, bio = record
    found = [f"{name}: {p}" for p in _consistency(probe, spacing, bio, image, labels)]
    if found:
        return None, found
    return Case(name, image, labels, probe, spacing, bio), []


# --------------------------------------------------------------------------- whole datasets

def _read_index(root: pathlib.Path) -> tuple[dict | None, list[str]]:
    """dataset.json and its problems."""
    path = root / "dataset.json"
    if not root.is_dir():
        return None, [f"{root}: not a folder"]
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        return None, [f"{path}: missing"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, [f"{path}: not valid JSON ({error})"]
    if not isinstance(index, dict):
        return None, [f"{path}: must hold a JSON object"]
    found = []
    if index.get("format") != FORMAT or index.get("version") not in READABLE:
        return None, [f"{path}: format {index.get('format')!r} version {index.get('version')!r}; "
                      f"this reader knows {FORMAT!r} versions {list(READABLE)}"]
    table = index.get("classes")
    # Tables written before the head and femur classes (the abdomen's eight), or before the
    # sweep's levels (values 0-14), read as they were: the table only ever grew at its end.
    if table not in [{str(k): v for k, v in list(DATASET_CLASSES.items())[:size]} for size in READ_TABLES]:
        found.append(f"{path}: class table differs from the format's {DATASET_CLASSES}")
    cases = index.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        return None, found + [f"{path}: 'cases' must be a list of case names"]
    bad = [c for c in cases if not _NAME.match(c)]
    if bad:
        found.append(f"{path}: case names must be plain file names, got {bad}")
    duplicates = sorted({c for c in cases if cases.count(c) > 1})
    if duplicates:
        found.append(f"{path}: case names listed twice: {duplicates}")
    return index, found


def _names(index: dict) -> list[str]:
    return [n for n in dict.fromkeys(index["cases"]) if _NAME.match(n)]


def _unlisted(root: pathlib.Path, names: set[str]) -> list[str]:
    found = []
    for folder in ("images", "labels", "cases"):
        for path in sorted((root / folder).glob("*")):
            if path.stem not in names:
                found.append(f"{folder}/{path.name}: not listed in dataset.json")
    return found


def _raise(root: pathlib.Path, found: list[str]) -> None:
    raise DatasetError(f"{root}: {len(found)} problem(s):\n  " + "\n  ".join(found))


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An opened dataset: its folder, format version, case names, provenance, parsed records.

    Made by :func:`open`, which has checked dataset.json, the records and the files' presence;
    :meth:`read` decodes and checks one case's pixels.
    """

    root: pathlib.Path
    version: int
    cases: tuple[str, ...]
    generator: dict
    source: dict
    records: dict[str, Record]

    def structures(self) -> set[str]:
        """The structures measured in this dataset's planes (``abdomen``, ``head``)."""
        return {bio.structure for _, _, bio in self.records.values()}

    def read(self, name: str) -> Case:
        """Case ``name``, decoded and checked; :class:`DatasetError` lists its problems."""
        if name not in self.records:
            _raise(self.root, [f"{name}: not a case of this dataset"])
        case, found = _decode_case(self.root, name, self.records[name])
        if found:
            _raise(self.root, found)
        return case

    def iter_cases(self) -> Iterator[Case]:
        """Every case in dataset.json's order, each read once.

        A case whose pixels fail the checks is skipped; after the last case,
        :class:`DatasetError` lists every such problem.
        """
        found = []
        for name in self.cases:
            case, problems = _decode_case(self.root, name, self.records[name])
            found += problems
            if case is not None:
                yield case
        if found:
            _raise(self.root, found)


def open(path: str | os.PathLike) -> Dataset:  # noqa: A001 (dataset.open, like gzip.open)
    """Open the dataset at ``path``: dataset.json, case records and files present, no pixels read.

    :class:`DatasetError` lists every problem found.
    """
    root = pathlib.Path(path)
    index, found = _read_index(root)
    if index is None:
        _raise(root, found)
    names = _names(index)
    records = {}
    for name in names:
        record, problems = _check_case(root, name, index["version"])
        found += problems
        records[name] = record
    found += _unlisted(root, set(names))
    if found:
        _raise(root, found)
    return Dataset(root, index["version"], tuple(names), index.get("generator", {}),
                   index.get("source", {}), records)


def validate(path: str | os.PathLike) -> list[str]:
    """Every problem of the dataset at ``path``, each naming its case; empty when it is usable.

    Checks dataset.json (format, version, class table, case names), and for each case: files
    present and readable, a valid case record, image and label map of the same size, label
    values from the class table, the probe's fan on the image and matching the label map's
    ``outside_fan`` pixels, the ellipse inside the image and agreeing with the circumference.
    Files that dataset.json does not list are reported too. Never stops at the first problem.
    """
    root = pathlib.Path(path)
    index, found = _read_index(root)
    if index is None:
        return found
    names = _names(index)
    for name in names:
        record, problems = _check_case(root, name, index["version"])
        found += problems or _decode_case(root, name, record)[1]
    return found + _unlisted(root, set(names))


def write_case(root: str | os.PathLike, case: Case) -> None:
    """Write one case's image, labels and record under ``root`` (folders must exist)."""
    root = pathlib.Path(root)
    (root / "images" / f"{case.name}.png").write_bytes(scans.encode_png(case.image))
    (root / "labels" / f"{case.name}.png").write_bytes(scans.encode_png(case.labels))
    (root / "cases" / f"{case.name}.json").write_text(json.dumps(case_record(case), indent=2) + "\n")


def write_dataset(out: str | os.PathLike, cases: Iterable[Case], generator: dict | None = None,
                  source: dict | None = None, tool: str | None = None) -> pathlib.Path:
    """Write ``cases`` as a dataset (version 2) at ``out``, replacing whatever was there.

    ``generator`` and ``source`` go into dataset.json (see the module docstring); ``tool``
    marks the dataset as its output (:func:`fetal_biometry.atomic.mark`). The dataset
    is written into a temporary folder beside ``out``, validated, and only then renamed into
    place: a crash or kill never leaves a half-written dataset under ``out``.
    :class:`DatasetError` (nothing written) if the result does not validate.
    """
    out = pathlib.Path(out)
    with atomic.staged_dir(out) as tmp:
        if tool:
            atomic.mark(tmp, tool)
        for folder in ("images", "labels", "cases"):
            (tmp / folder).mkdir()
        names = []
        for case in cases:
            write_case(tmp, case)
            names.append(case.name)
        index = {"format": FORMAT, "version": VERSION,
                 "classes": {str(k): v for k, v in DATASET_CLASSES.items()}, "outside_fan": OUTSIDE,
                 "cases": names, "generator": generator or {}}
        if source:
            index["source"] = source
        (tmp / "dataset.json").write_text(json.dumps(index, indent=2) + "\n")
        found = validate(tmp)
        if found:
            _raise(out, found)
    return out
