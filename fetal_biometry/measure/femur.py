"""Femur length from a class map: end to end along the ossified diaphysis, as ISUOG defines it.

The femur is the largest 8-connected region of the class map's
:data:`~fetal_biometry.labels.FEMUR` (the ossified diaphysis; the cartilage ends are not
measured). Its outline is traced with sub-pixel contours (points half-way between a femur
pixel and the one outside); its axis is the principal axis of its pixels; **FL** is the extent
of the outline along that axis, end to end, each end the mean position of the outline points on
its end face (within ``END_FACE_PX`` of the extreme and of the axis: the extreme point of a
staircase alone overshoots by about half a pixel) (Salomon et al., Ultrasound Obstet Gynecol
2019;53:715-23: calipers at the ends of the ossified diaphysis, the femur's long axis in
the plane).

Trust rules (otherwise ``"FL not measured: ..."`` and no number): the femur is at least
``MIN_LENGTH_MM`` long and does not touch the edge of the scan (an end outside it is unseen).
Plane rules (measured, not accepted): both ends must be blunt, the width near each end at
least ``MIN_END_WIDTH`` of the shaft's (ends that taper are the mark of a foreshortened femur,
cut obliquely), and with the probe known the beam must meet the shaft at ``MIN_BEAM_ANGLE_DEG``
or more (along the beam the bone's ends blur and it is measured short).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from skimage import measure as skmeasure

from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import FEMUR, OUTSIDE

MIN_AREA_MM2 = 2.0
MIN_LENGTH_MM = 5.0
MIN_END_WIDTH = 0.75  # end width / shaft width; a bar is ~1, an oblique section's oval ~0.55
END_BAND = (0.04, 0.14)  # where an end's width is read: this share of the length in from it
END_FACE_PX = 1.5
MIN_BEAM_ANGLE_DEG = 45.0  # ISUOG: the beam at 45-90 degrees to the shaft

NOT_MEASURED = "FL not measured"


@dataclasses.dataclass(frozen=True, eq=False)
class FemurMeasurement:
    """What :func:`measure` found: FL (mm, None when not measured), the plane verdict and why,
    the two ends (x, y) px, the blunt-end ratio and the beam angle (degrees, None without a
    probe)."""

    fl_mm: float | None
    accepted: bool
    reasons: tuple[str, ...]
    ends: tuple[tuple[float, float], tuple[float, float]] | None
    spacing_mm: float
    end_width_ratio: float | None = None
    beam_angle_deg: float | None = None

    def as_measurements(self) -> dict[str, float]:
        """``{"FL": mm}`` when measured, else empty."""
        return {} if self.fl_mm is None else {"FL": self.fl_mm}


def femur_region(class_map: np.ndarray, spacing_mm: float) -> np.ndarray | None:
    """The largest 8-connected femur region of at least :data:`MIN_AREA_MM2`, or None."""
    components, count = ndimage.label(class_map == FEMUR, structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    return components == largest if sizes[largest - 1] * spacing_mm ** 2 >= MIN_AREA_MM2 else None


def _outline(region: np.ndarray) -> np.ndarray:
    contours = skmeasure.find_contours(np.pad(region, 1).astype(np.float32), 0.5)
    return np.concatenate(contours)[:, ::-1] - 1.0  # (x, y)


def _axis(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and unit principal axis (x, y) of the region's pixels."""
    rows, cols = np.nonzero(region)
    xy = np.stack([cols, rows], axis=1).astype(float)
    centre = xy.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((xy - centre).T))
    return centre, vectors[:, -1]


def end_positions(along: np.ndarray, across: np.ndarray) -> tuple[float, float]:
    """Where the two ends lie along the axis (px from the centroid): the mean of the outline
    points on each end face, near the axis (within 60 % of the shaft's half width)."""
    lo, hi = along.min(), along.max()
    middle = (along >= lo + 0.4 * (hi - lo)) & (along <= lo + 0.6 * (hi - lo))
    centre, half = (np.median(across[middle]), np.ptp(across[middle]) / 2) if middle.sum() >= 2 \
        else (0.0, 0.0)
    near_axis = np.abs(across - centre) <= max(0.6 * half, 0.5)
    low = near_axis & (along <= lo + END_FACE_PX)
    high = near_axis & (along >= hi - END_FACE_PX)
    return (float(along[low].mean()) if low.any() else float(lo),
            float(along[high].mean()) if high.any() else float(hi))


def end_width_ratio(along: np.ndarray, across: np.ndarray) -> float:
    """The narrower end's width over the shaft's (middle fifth), read in :data:`END_BAND`."""
    lo, hi = along.min(), along.max()
    length = hi - lo

    def width(a: float, b: float) -> float:
        inside = (along >= a) & (along <= b)
        return float(np.ptp(across[inside])) if inside.sum() >= 2 else 0.0

    shaft = width(lo + 0.4 * length, lo + 0.6 * length)
    if shaft <= 0:
        return 0.0
    near, far = END_BAND
    ends = (width(lo + near * length, lo + far * length), width(hi - far * length, hi - near * length))
    return min(ends) / shaft


def measure(class_map: np.ndarray, spacing_mm: float,
            geometry: geom.Geometry | None = None) -> FemurMeasurement:
    """Femur length (mm) and plane verdict of one class map; never raises on a poor map."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2 or not spacing_mm > 0:
        raise ValueError(f"a 2-D class map and a positive spacing are needed, got shape "
                         f"{class_map.shape} and {spacing_mm}")
    region = femur_region(class_map, spacing_mm)
    if region is None:
        return FemurMeasurement(None, False, (f"{NOT_MEASURED}: no femur found",), None, float(spacing_mm))
    centre, axis = _axis(region)
    points = _outline(region)
    along = (points - centre) @ axis
    across = (points - centre) @ np.array([-axis[1], axis[0]])
    low, high = end_positions(along, across)
    ends = (tuple(centre + low * axis), tuple(centre + high * axis))
    fl = (high - low) * spacing_mm
    border = ndimage.binary_dilation(region, np.ones((3, 3))) & ~region
    edge = np.zeros_like(region)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    problem = None
    if fl < MIN_LENGTH_MM:
        problem = f"femur too short to be one ({fl:.1f} mm < {MIN_LENGTH_MM:g} mm)"
    elif np.any(border & (class_map == OUTSIDE)) or np.any(region & edge):
        problem = "the femur runs out of the scan: an end is not seen"
    if problem:
        return FemurMeasurement(None, False, (f"{NOT_MEASURED}: {problem}",), ends, float(spacing_mm))
    reasons = []
    ratio = end_width_ratio(along, across)
    if ratio < MIN_END_WIDTH:
        reasons.append(f"the femur's ends taper, it is foreshortened: the plane cuts the shaft "
                       f"obliquely (end width {ratio:.0%} of the shaft's < {MIN_END_WIDTH:.0%})")
    angle = None
    if geometry is not None:
        beam = geom.beam_directions(geometry, class_map.shape)[int(round(centre[1])), int(round(centre[0]))]
        angle = math.degrees(math.acos(min(1.0, abs(float(np.dot(beam, axis)) / np.linalg.norm(beam)))))
        if angle < MIN_BEAM_ANGLE_DEG:
            reasons.append(f"the beam runs along the femur ({angle:.0f} degrees to the shaft < "
                           f"{MIN_BEAM_ANGLE_DEG:g}): its ends blur")
    return FemurMeasurement(fl, not reasons, tuple(reasons), ends, float(spacing_mm), ratio, angle)
