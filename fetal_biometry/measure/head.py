"""Head biometry from a class map: HC, OFD, BPD (outer-to-outer and outer-to-inner), cephalic index.

As ISUOG's guidelines define them (Salomon et al., Ultrasound Obstet Gynecol 2019;53:715-23),
on a transthalamic plane:

- **HC**: the ellipse at the *outer* border of the skull. The skull is the class map's
  :data:`~fetal_biometry.labels.SKULL`; the head is the largest connected region of the head's
  classes (:data:`~fetal_biometry.labels.HEAD_REGION`: skull, brain, midline and the
  landmarks), holes filled. Its outline is traced with sub-pixel contours (points half-way
  between a head pixel and the one outside) and a point is kept where the inside pixel is skull
  (a suture or a gap lets brain reach the outline: no skull border there) and the outside one is
  inside the fan. The ellipse is the least-squares fit of the kept points
  (:func:`fetal_biometry.measure.ellipse.fit`), refitted once without the points more than
  ``OUTLIER_MM`` from it; HC is its perimeter (Ramanujan).
- **OFD**: outer-to-outer along the ellipse's long axis, ``2 a``; **BPD outer-to-outer**: along
  its short axis, ``2 b`` (the convention of the INTERGROWTH-21st standards).
- **BPD outer-to-inner** (Hadlock's convention, leading edge to leading edge): from the outer
  border of the near parietal bone (on the ellipse) to the inner border of the far one, found
  along the short axis in the map: where the skull starts beyond the centre (the skull indicator,
  bilinearly interpolated, crosses one half). Near and far are along the beam (the probe's
  geometry; without it the far table is the lower one in the image).
- **Cephalic index**: BPD (outer-to-outer) / OFD.

Trust rules, as the AC has (:data:`TRUST_RULES`): the kept outline must cover enough of the
ellipse (``MIN_COVERAGE``), lie close to it (``MAX_RESIDUAL_MM``), the ellipse must stay in
the scan (``MAX_OUTSIDE_SHARE``) and be a plausible head (``AXIS_RATIO``); otherwise
``"HC not measured: ..."`` and no numbers. Plane rules (measured, not accepted), ISUOG's
transthalamic plane: the thalami and the cavum septi pellucidi seen, the cerebellum not (else
the plane is transcerebellar) (:func:`landmark_problems`); a midline tilted off the long axis
or off centre makes the section oblique (``MAX_MIDLINE_TILT_DEG``, ``MAX_MIDLINE_OFFSET``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from skimage import measure as skmeasure

from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import CAVUM, CEREBELLUM, HEAD_REGION, MIDLINE, OUTSIDE, SKULL, THALAMUS
from fetal_biometry.measure.biometry import Rule, check_map
from fetal_biometry.measure.ellipse import (Ellipse, ellipse_frame, ellipse_mask, ellipse_perimeter,
                                            fit, normalized_radius)

MIN_HEAD_MM2 = 150.0  # a head section under ~14 mm across is none (HC at 14 weeks: ~98 mm)
OUTLIER_MM = 1.5  # outline points this far from the first fit are left out of the second
COVERAGE_BINS = 72
MIN_COVERAGE = 0.6  # share of the ellipse's perimeter with skull outline near it
MAX_RESIDUAL_MM = 1.0  # RMS distance of the kept outline to the ellipse
MAX_OUTSIDE_SHARE = 0.002  # share of the ellipse's area outside the fan
AXIS_RATIO = (0.55, 1.0)  # b / a of a head section (cephalic index 0.7-0.9 with margins)
MAX_MIDLINE_TILT_DEG = 8.0  # midline vs the ellipse's long axis
MAX_MIDLINE_OFFSET = 0.06  # midline's distance from the centre, share of the short semi-axis
MIN_MIDLINE_PX = 10
# Plane landmarks (ISUOG's transthalamic plane): the largest component of each class, in mm^2.
MIN_THALAMUS_MM2 = 4.0  # each thalamus is ~9 mm^2 at 14 weeks
MIN_CAVUM_MM2 = 1.0  # the cavum septi pellucidi: ~2 mm^2 at 14 weeks
MIN_CEREBELLUM_MM2 = 4.0  # a cerebellum this large in view: the plane is transcerebellar

NOT_MEASURED = "HC not measured"
BPD_OI_NOT_MEASURED = "BPD outer-to-inner not measured"


@dataclasses.dataclass(frozen=True)
class HeadSupport:
    """What the trust rules read: ``coverage`` (share of the perimeter near kept outline points),
    ``residual_mm`` (their RMS distance to the ellipse), ``outside_share`` (of its area outside
    the fan) and ``axis_ratio`` (b / a)."""

    coverage: float
    residual_mm: float
    outside_share: float
    axis_ratio: float


TRUST_RULES = (
    Rule("coverage", "MIN_COVERAGE", MIN_COVERAGE, True,
         "outer skull border too incomplete (share of the ellipse covered"),
    Rule("residual_mm", "MAX_RESIDUAL_MM", MAX_RESIDUAL_MM, False,
         "skull border too ragged for an ellipse (RMS distance of its points", "mm"),
    Rule("outside_share", "MAX_OUTSIDE_SHARE", MAX_OUTSIDE_SHARE, False,
         "the head reaches beyond the scan (share of its area outside the fan"),
)


@dataclasses.dataclass(frozen=True, eq=False)
class HeadMeasurement:
    """What :func:`measure` found. Lengths in mm, None where not measured; ``reasons`` says why
    (a measurement not made) or why the plane is not accepted; ``points`` are the kept outer
    border points (x, y); ``fit`` the ellipse whatever the trust rules said."""

    ellipse: Ellipse | None
    hc_mm: float | None
    ofd_mm: float | None
    bpd_oo_mm: float | None
    bpd_oi_mm: float | None
    cephalic_index: float | None
    accepted: bool
    reasons: tuple[str, ...]
    points: np.ndarray
    spacing_mm: float
    fit: Ellipse | None = None
    support: HeadSupport | None = None
    far_inner: tuple[float, float] | None = None  # the far table's inner border point (x, y)

    def as_measurements(self) -> dict[str, float]:
        """The measured values by :data:`fetal_biometry.measure.growth.MEASUREMENTS` keys (mm)."""
        values = {"HC": self.hc_mm, "OFD": self.ofd_mm, "BPD_OO": self.bpd_oo_mm,
                  "BPD_OI": self.bpd_oi_mm}
        return {k: v for k, v in values.items() if v is not None}


def head_region(class_map: np.ndarray, spacing_mm: float) -> np.ndarray | None:
    """The largest 8-connected region of the head's classes (:data:`HEAD_REGION`), holes filled;
    None when none reaches :data:`MIN_HEAD_MM2`."""
    head = np.isin(class_map, HEAD_REGION)
    components, count = ndimage.label(head, structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] * spacing_mm ** 2 < MIN_HEAD_MM2:
        return None
    return ndimage.binary_fill_holes(components == largest)


def outer_border(class_map: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Sub-pixel points (x, y) of the region's outline where the inside pixel is skull and the
    outside pixel is in the fan: the skull's outer border."""
    padded = np.pad(region, 1)
    labels = np.pad(class_map, 1, constant_values=OUTSIDE)
    contours = skmeasure.find_contours(padded.astype(np.float32), 0.5)
    if not contours:
        return np.empty((0, 2))
    rc = np.unique(np.concatenate(contours), axis=0)
    lo, hi = np.floor(rc).astype(int), np.ceil(rc).astype(int)
    lo_in = padded[lo[:, 0], lo[:, 1]]
    inner = np.where(lo_in[:, None], lo, hi)
    outer = np.where(lo_in[:, None], hi, lo)
    keep = (labels[inner[:, 0], inner[:, 1]] == SKULL) & (labels[outer[:, 0], outer[:, 1]] != OUTSIDE)
    return rc[keep][:, ::-1] - 1.0


def _distance(ellipse: Ellipse, points: np.ndarray) -> np.ndarray:
    """Approximate distance (px) of points to the ellipse: radial, in its normalised frame."""
    rho = normalized_radius(ellipse, points[:, 0], points[:, 1])
    return np.abs(rho - 1) * math.sqrt(ellipse.a * ellipse.b)


def fit_skull(points: np.ndarray, spacing_mm: float) -> tuple[Ellipse | None, np.ndarray]:
    """Least-squares ellipse of the outer border points, refitted without the outliers;
    and the inlier mask."""
    ellipse, _ = fit(points)
    if ellipse is None:
        return None, np.zeros(len(points), bool)
    inliers = _distance(ellipse, points) <= OUTLIER_MM / spacing_mm
    if inliers.sum() >= 5:
        refit, _ = fit(points[inliers])
        ellipse = refit or ellipse
        inliers = _distance(ellipse, points) <= OUTLIER_MM / spacing_mm
    return ellipse, inliers


def support(ellipse: Ellipse, points: np.ndarray, class_map: np.ndarray, spacing_mm: float) -> HeadSupport:
    """What the class map says for a skull ellipse fitted to ``points`` (its inliers)."""
    u, v = ellipse_frame(ellipse, points[:, 0], points[:, 1])
    angle = np.arctan2(v / ellipse.b, u / ellipse.a)
    bins = np.unique(((angle + np.pi) / (2 * np.pi) * COVERAGE_BINS).astype(int) % COVERAGE_BINS)
    residual = float(np.sqrt(np.mean(_distance(ellipse, points) ** 2))) * spacing_mm if len(points) else math.inf
    mask = ellipse_mask(ellipse, class_map.shape)
    area = ellipse.area
    inside_image = float(mask.sum())
    outside = (area - inside_image + np.count_nonzero(mask & (class_map == OUTSIDE))) / area
    return HeadSupport(len(bins) / COVERAGE_BINS, residual, max(0.0, float(outside)), ellipse.b / ellipse.a)


def _untrusted(found: HeadSupport) -> str | None:
    for rule in TRUST_RULES:
        if rule.fails(getattr(found, rule.field)):
            return rule.reason(getattr(found, rule.field))
    lo, hi = AXIS_RATIO
    if not lo <= found.axis_ratio <= hi:
        return f"the ellipse is no head section (axis ratio {found.axis_ratio:.2f} < {lo:g})"
    return None


def _far_direction(ellipse: Ellipse, shape: tuple[int, int], geometry: geom.Geometry | None) -> np.ndarray:
    """Unit vector (x, y) along the short axis towards the far parietal table."""
    theta = math.radians(ellipse.angle)
    minor = np.array([-math.sin(theta), math.cos(theta)])
    ends = np.array([[ellipse.cx, ellipse.cy] + side * ellipse.b * minor for side in (1, -1)])
    if geometry is None:
        depth = ends[:, 1]  # the probe at the top: deeper is lower in the image
    else:
        depth = geom.image_to_beam(geometry, ends[:, 0], ends[:, 1])[0]
    return minor if depth[0] >= depth[1] else -minor


def far_inner_border(class_map: np.ndarray, ellipse: Ellipse, direction: np.ndarray,
                     step: float = 0.05) -> float | None:
    """Distance (px) from the ellipse's centre to the inner border of the skull along
    ``direction``: where the skull indicator (bilinear) first reaches one half, beyond a quarter
    of the way out; None when the ray meets no skull before the ellipse."""
    t = np.arange(0.25 * ellipse.b, 1.05 * ellipse.b, step)
    x, y = ellipse.cx + t * direction[0], ellipse.cy + t * direction[1]
    skull = ndimage.map_coordinates((class_map == SKULL).astype(np.float32), [y, x], order=1,
                                    mode="constant", cval=0.0)
    hits = np.flatnonzero(skull >= 0.5)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return None
    # Linear interpolation between the two samples either side of the crossing.
    frac = (0.5 - skull[i - 1]) / max(skull[i] - skull[i - 1], 1e-6)
    return float(t[i - 1] + frac * step)


def midline_pixels(class_map: np.ndarray, ellipse: Ellipse) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the midline's pixels inside the head: components of at least
    :data:`MIN_MIDLINE_PX` pixels (isolated mislabelled pixels are no midline)."""
    inside = ellipse_mask(ellipse, class_map.shape)
    components, count = ndimage.label((class_map == MIDLINE) & inside, structure=np.ones((3, 3)))
    sizes = np.bincount(components.ravel())
    keep = np.flatnonzero(sizes >= MIN_MIDLINE_PX)
    return np.nonzero(np.isin(components, keep[keep > 0]))


def midline_problem(class_map: np.ndarray, ellipse: Ellipse) -> str | None:
    """Why the midline says the plane is oblique (tilted or off centre), or None (also when the
    midline is not seen: too few pixels to judge). The line is fitted to the midline's pixels in
    the ellipse's frame, then again without those more than two pixels from it."""
    rows, cols = midline_pixels(class_map, ellipse)
    if len(rows) < MIN_MIDLINE_PX:
        return None
    u, v = ellipse_frame(ellipse, cols, rows)
    slope, offset = np.polyfit(u, v, 1)
    near = np.abs(v - (slope * u + offset)) <= 2.0
    if near.sum() >= MIN_MIDLINE_PX:
        slope, offset = np.polyfit(u[near], v[near], 1)
    tilt = abs(math.degrees(math.atan(slope)))
    if tilt > MAX_MIDLINE_TILT_DEG:
        return (f"midline tilted {tilt:.0f} degrees off the head's long axis, the plane is oblique "
                f"(> {MAX_MIDLINE_TILT_DEG:g})")
    if abs(offset) > MAX_MIDLINE_OFFSET * ellipse.b:
        return (f"midline off centre by {abs(offset) / ellipse.b:.0%} of the half-BPD, the plane is "
                f"oblique (> {MAX_MIDLINE_OFFSET:.0%})")
    return None


def _largest_mm2(class_map: np.ndarray, cls: int, within: np.ndarray, spacing_mm: float) -> float:
    """Area (mm^2) of the largest 8-connected component of ``cls`` inside ``within``."""
    components, count = ndimage.label((class_map == cls) & within, structure=np.ones((3, 3)))
    return float(np.bincount(components.ravel())[1:].max()) * spacing_mm ** 2 if count else 0.0


def landmark_problems(class_map: np.ndarray, ellipse: Ellipse, spacing_mm: float) -> list[str]:
    """Why the map is no transthalamic plane by its landmarks: the thalami and the cavum septi
    pellucidi must be seen inside the head, the cerebellum not (that is the transcerebellar
    plane)."""
    inside = ellipse_mask(ellipse, class_map.shape)
    problems = []
    if _largest_mm2(class_map, CEREBELLUM, inside, spacing_mm) >= MIN_CEREBELLUM_MM2:
        problems.append("cerebellum in view: a transcerebellar plane, not the transthalamic one "
                        "HC and BPD are measured in")
    if _largest_mm2(class_map, THALAMUS, inside, spacing_mm) < MIN_THALAMUS_MM2:
        problems.append(f"thalami not seen (none of {MIN_THALAMUS_MM2:g} mm^2)")
    if _largest_mm2(class_map, CAVUM, inside, spacing_mm) < MIN_CAVUM_MM2:
        problems.append(f"cavum septi pellucidi not seen (none of {MIN_CAVUM_MM2:g} mm^2)")
    return problems


def measure(class_map: np.ndarray, spacing_mm: float,
            geometry: geom.Geometry | None = None) -> HeadMeasurement:
    """HC, OFD, BPD (outer-to-outer, outer-to-inner) and cephalic index of one class map.

    ``geometry`` (the probe) tells near from far for the outer-to-inner BPD. Never raises on a
    poor map: what cannot be measured is None and the first reason says why.
    """
    class_map = check_map(class_map, spacing_mm, values=None)  # any dataset class
    empty = np.empty((0, 2))
    region = head_region(class_map, spacing_mm)
    if region is None:
        return HeadMeasurement(None, None, None, None, None, None, False,
                               (f"{NOT_MEASURED}: no head (skull and brain) found",), empty,
                               float(spacing_mm))
    points = outer_border(class_map, region)
    ellipse, inliers = fit_skull(points, spacing_mm) if len(points) >= 5 else (None, None)
    if ellipse is None:
        return HeadMeasurement(None, None, None, None, None, None, False,
                               (f"{NOT_MEASURED}: no outer skull border to fit",), points,
                               float(spacing_mm))
    found = support(ellipse, points[inliers], class_map, spacing_mm)
    problem = _untrusted(found)
    if problem:
        return HeadMeasurement(None, None, None, None, None, None, False, (f"{NOT_MEASURED}: {problem}",),
                               points[inliers], float(spacing_mm), ellipse, found)
    direction = _far_direction(ellipse, class_map.shape, geometry)
    inner = far_inner_border(class_map, ellipse, direction)
    reasons = []
    bpd_oi = far = None
    if inner is None or inner < ellipse.b - 8.0 / spacing_mm:
        reasons.append(f"{BPD_OI_NOT_MEASURED}: the far parietal bone's inner border is not seen "
                       f"along the short axis")
    else:
        bpd_oi = (ellipse.b + inner) * spacing_mm
        far = (ellipse.cx + inner * direction[0], ellipse.cy + inner * direction[1])
    plane = landmark_problems(class_map, ellipse, spacing_mm)
    oblique = midline_problem(class_map, ellipse)
    plane += [oblique] if oblique else []
    return HeadMeasurement(
        ellipse, ellipse_perimeter(ellipse.a, ellipse.b) * spacing_mm, 2 * ellipse.a * spacing_mm,
        2 * ellipse.b * spacing_mm, bpd_oi, ellipse.b / ellipse.a, not plane,
        tuple(reasons + plane), points[inliers], float(spacing_mm), ellipse, found, far)
