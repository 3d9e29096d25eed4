"""Which plane a class map shows, and the measurements that plane allows.

A scan nobody labelled may be an abdomen, a head or a femur: :func:`plane_type` tells them
apart by the structures in its class map (dataset classes, :data:`fetal_biometry.labels.CLASSES`,
as a segmenter of the head and femur classes gives them), and :func:`measure_plane` measures
what that plane allows: the AC (a map with the abdomen class, a segmenter's or the truth: the
segmented abdomen, :func:`fetal_biometry.measure.abdomen.measure`, on the map reduced to the abdomen
table, head and femur classes as background; a patch classifier's map:
:func:`fetal_biometry.measure.biometry.measure`, where the body meets the fluid), HC, OFD, BPD and cephalic index
(:func:`fetal_biometry.measure.head.measure`) or FL (:func:`fetal_biometry.measure.femur.measure`). The
measurements come back as the plain dict :func:`fetal_biometry.measure.growth.panel` reads
(``{"AC": mm}``, ``{"HC": mm, "OFD": mm, "BPD_OO": mm, "BPD_OI": mm}``, ``{"FL": mm}``).

The rule, in order: a skull of at least :data:`MIN_SKULL_MM2` with more brain than abdominal
tissue around it makes a head (a segmenter's maps show specks of skull and brain in abdominal
planes, where spine and ribs are bright, but there the abdomen outweighs them: the brain rule was
chosen on the panel's validation planes, 55 of 60 types right without it, 59 with it, net seed 0;
truth maps have no abdomen in a head); else a femur of at
least :data:`MIN_FEMUR_MM2` a femur; else amniotic fluid, a stomach bubble, an umbilical vein
or abdominal tissue of at least :data:`MIN_ABDOMEN_MM2` an abdomen (the patch classifier's maps
have no abdomen class: its AC is fitted where the body meets the fluid); else "none". A head plane
may show a limb and an abdomen plane a limb's bone (labelled background, not femur), so the
skull wins over the femur, and the femur class is only the femur measured.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import (ABDOMEN, BRAIN, FEMUR, FLUID, SEGMENTER_CLASSES, SKULL, STOMACH, VEIN,
                                   classifier_labels, segmenter_labels)
from fetal_biometry.measure import abdomen, biometry, femur, head

PLANE_TYPES = ("abdomen", "head", "femur", "none")
MIN_SKULL_MM2 = 60.0  # a skull ring of ~100 mm HC and 1 mm thick at 14 weeks has ~100 mm^2
MIN_FEMUR_MM2 = 8.0  # a 10 mm femur 1 mm wide at 14 weeks
MIN_ABDOMEN_MM2 = 40.0


@dataclasses.dataclass(frozen=True, eq=False)
class PlaneResult:
    """The plane type, what it allowed measuring (mm, by :data:`fetal_biometry.measure.growth.MEASUREMENTS`
    keys; empty when nothing was measured), the plane verdict with its reasons, and the
    structure's own measurement object (:class:`~fetal_biometry.measure.biometry.Measurement`,
    :class:`~fetal_biometry.measure.head.HeadMeasurement` or :class:`~fetal_biometry.measure.femur.FemurMeasurement`;
    None for "none")."""

    kind: str
    measurements: dict
    accepted: bool
    reasons: tuple[str, ...]
    detail: object = None


def plane_type(class_map: np.ndarray, spacing_mm: float) -> str:
    """``"head"``, ``"femur"``, ``"abdomen"`` or ``"none"`` by the structures the map shows."""
    class_map = np.asarray(class_map)
    if not spacing_mm > 0:
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm}")
    pixel = spacing_mm ** 2
    if np.count_nonzero(class_map == SKULL) * pixel >= MIN_SKULL_MM2 \
            and np.count_nonzero(class_map == BRAIN) > np.count_nonzero(class_map == ABDOMEN):
        return "head"
    if np.count_nonzero(class_map == FEMUR) * pixel >= MIN_FEMUR_MM2:
        return "femur"
    if np.count_nonzero(np.isin(class_map, (FLUID, STOMACH, VEIN, ABDOMEN))) * pixel >= MIN_ABDOMEN_MM2:
        return "abdomen"
    return "none"


def measure_plane(class_map: np.ndarray, spacing_mm: float,
                  geometry: geom.Geometry | None = None) -> PlaneResult:
    """The plane a class map shows and its measurements (see the module docstring)."""
    kind = plane_type(class_map, spacing_mm)
    if kind == "head":
        m = head.measure(class_map, spacing_mm, geometry)
        return PlaneResult(kind, m.as_measurements(), m.accepted, m.reasons, m)
    if kind == "femur":
        m = femur.measure(class_map, spacing_mm, geometry)
        return PlaneResult(kind, m.as_measurements(), m.accepted, m.reasons, m)
    if kind == "abdomen":
        class_map = np.asarray(class_map)
        m = (abdomen.measure(segmenter_labels(class_map, SEGMENTER_CLASSES), spacing_mm)
             if (class_map == ABDOMEN).any() else biometry.measure(classifier_labels(class_map), spacing_mm))
        return PlaneResult(kind, {} if m.ac_mm is None else {"AC": m.ac_mm}, m.accepted, m.reasons, m)
    return PlaneResult(kind, {}, False, ("no abdomen, head or femur in the scan",))


def record(result: PlaneResult) -> dict:
    """What a scan's JSON says of its plane (JSON-ready): the type, the measurements (mm), the
    verdict with its reasons, and the structure's geometry (ellipse, cephalic index, femur ends)."""
    m = result.detail
    found: dict = {"plane_type": result.kind, "measurements": dict(result.measurements),
                   "plane_acceptable": result.accepted, "reasons": list(result.reasons)}
    if result.kind in ("abdomen", "head"):
        e = m.ellipse
        found["ellipse"] = None if e is None else {"center": [e.cx, e.cy], "semi_axes": [e.a, e.b],
                                                   "angle_deg": e.angle}
    if result.kind == "abdomen":
        found["ac_mm"] = m.ac_mm
    elif result.kind == "head":
        found["cephalic_index"] = m.cephalic_index
    elif result.kind == "femur":
        found["femur_ends"] = None if m.ends is None else [list(map(float, end)) for end in m.ends]
    return found
