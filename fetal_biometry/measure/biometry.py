"""Abdominal circumference and plane acceptance from a dense class map.

A class map (one of :data:`CLASS_VALUES` per pixel) becomes an ellipse around the fetal abdomen,
an abdominal circumference (AC) in millimetres and a verdict on the scan plane, in five steps:

1. **Boundary** (:func:`boundary_points`). The map is cleaned by a 3x3 majority vote (isolated
   wrong labels disappear, smooth edges stay put). The body is a 4-connected region of
   background, stomach bubble or umbilical vein pixels, holes filled. Each region of at least
   ``min_body_mm2`` is traced with sub-pixel contours (points half-way between a body pixel and
   its neighbour); a point is *kept* when it faces amniotic fluid and lies more than
   ``EDGE_MARGIN_PX`` pixels from shadow, from outside the fan and from the image border, where
   the body wall cannot be seen. The abdomen is the region that is best enclosed by fluid (the
   share of its non-shadowed contour that faces fluid; shadow is unknown, not evidence):
   regions at least half enclosed come first, among them those containing stomach bubble or
   umbilical vein pixels, then the higher share. Maternal tissue beyond the fluid borders the fan
   edge or the image border, so it loses to the abdomen even where it is larger.
2. **Ellipse** (:func:`fit_ellipse`). RANSAC over the kept points: 5-point direct least-squares
   ellipse fits (Fitzgibbon et al. 1999, in Halir and Flusser's stable form), only hypotheses of
   plausible size and shape, scored MSAC-style by the Sampson distance (a first-order
   approximation of the geometric distance); a point only counts when its fluid side is outside
   the ellipse. The best hypotheses are refitted on their inliers (LO-RANSAC) and the best
   refit wins. Jang et al. (2018) fitted the abdomen with a Hough transform; RANSAC is the
   usual robust alternative for the same job, much cheaper for five free parameters.
3. **Trust** (:func:`support`, :func:`untrusted`): a fit is only measured when the class map
   supports it: inlier wall points around enough of its perimeter (``MIN_COVERAGE``) and
   without one long unseen stretch (``MAX_GAP``), close to it (``MAX_RESIDUAL_MM``), little
   amniotic fluid inside it (``MAX_FLUID_SHARE``: a fit that went round the fluid) and little of
   it outside the fan (``MAX_OUTSIDE_SHARE``). Otherwise the first reason is "AC not measured:
   ..." and no number is given: a wrong AC reported as if it were right is worse than none.
   The limits were chosen on validation scans (:mod:`fetal_biometry.measure.thresholds`).
4. **AC** (:func:`ellipse_perimeter`): Ramanujan's second approximation of the perimeter, times
   the pixel spacing.
5. **Plane** (:func:`assess_plane`): accepted when the stomach bubble and the umbilical vein
   (the largest connected component of each class, at least a minimum area) are both seen, both
   centroids are inside the ellipse, neither takes an implausible share of the abdomen, the
   ellipse is round enough for a transverse section (``MIN_PLANE_AXIS_RATIO``; an oblique cut is
   an elongated oval) and the vein stays inside the body wall (``VEIN_SKIN_MM``; a vein at the
   skin line is the cord insertion, below the AC plane). The map has no orientation (left/right,
   anterior/posterior are unknown), so placement is not judged further.

Conventions: pixel centres sit at integer coordinates, ``x`` is the column and ``y`` the row.
An :class:`Ellipse` has semi-axes ``a >= b`` in pixels and ``angle``, the direction of the
``a`` axis in degrees from +x towards +y (clockwise on screen), in [0, 180): the convention of
``cv2.ellipse`` with ``axes=(a, b)``. Spacing is isotropic, in mm per pixel.

:func:`measure` runs the whole chain (:func:`fetal_biometry.figures.draw_measurement` renders
its result); :func:`hadlock_efw` turns AC, femur length and optionally the head into an
estimated fetal weight.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from skimage import measure as skmeasure, morphology

from fetal_biometry.labels import (BACKGROUND, CLASSIFIER_VALUES as CLASS_VALUES, FLUID, OUTSIDE,
                                   SHADOW, STOMACH, VEIN)
from fetal_biometry.measure.ellipse import (Conditioned, Ellipse, conic_params, direct_fit,
                                            ellipse_frame, ellipse_mask, ellipse_perimeter,
                                            normalized_radius, sampson)

BODY_CLASSES = (BACKGROUND, STOMACH, VEIN)

EDGE_MARGIN_PX = 2  # boundary points this close to shadow, fan edge or image border are dropped
MIN_BOUNDARY_POINTS = 20

# Defaults in mm, chosen around the typical abdomen (semi-axes 25-60 mm).
SEMI_AXES_MM = (15.0, 90.0)
MIN_AXIS_RATIO = 0.5  # b / a; no ellipse more eccentric than this is fitted at all
MIN_BODY_MM2 = math.pi * SEMI_AXES_MM[0] ** 2 * MIN_AXIS_RATIO  # the smallest plausible abdomen
INLIER_MM = 1.5
COVERAGE_BINS = 36
REFINED_HYPOTHESES = 10
MIN_STOMACH_MM2 = 40.0  # a bubble under ~7 mm across is no credible stomach
MIN_VEIN_MM2 = 30.0  # an intrahepatic vein segment under ~1 cm x 3 mm is no landmark
MAX_STOMACH_SHARE = 0.25  # of the ellipse area
MAX_VEIN_SHARE = 0.10

# Trust: an ellipse is only measured when the class map supports it (see :class:`Support`).
# These limits and the two plane thresholds below were chosen on validation scans only
# (simulator seeds 2 and 4; seed 1 is the held-out set, 3 the foreign check set) by
# fetal_biometry.measure.thresholds, from the stored class maps of the nine nets of the ablation (three
# encodings x three seeds, 48 px patches, the widened simulator's training ranges):
#   python tools/experiments.py thresholds
# (540 validation measurements at 256, 384 and 512 px: under the loosest limits 506 measured,
# 84 of them off by more than 10 %; under these 303 measured, 3 off by more than 10 %, median
# 1.0 %, 90th percentile 2.8 %). Re-run it when the nets change; the experiments then measure
# their evaluations again from the stored class maps.
MIN_COVERAGE = 0.542  # share of the perimeter the inlier wall points cover; shadows hide much
MAX_GAP = 0.319  # longest stretch of the perimeter without wall points: drawn, not measured
MAX_RESIDUAL_MM = 0.777  # RMS distance of the inliers to the ellipse: a ragged wall is no outline
MAX_FLUID_SHARE = 0.070  # share of the ellipse area classified amniotic fluid: the fit went round
#                          fluid (the foreign-simulator failures)
MAX_OUTSIDE_SHARE = 0.002  # share of the ellipse area outside the fan: the whole abdomen must be
#                            in view, as a sonographer requires; a part outside is drawn, not seen

# Plane rules (the AC is still measured; the plane is not one to report it from).
MIN_PLANE_AXIS_RATIO = 0.778  # b / a; a transverse abdomen is round (0.85-1 in the simulator), an
#                               oblique cut an elongated oval
VEIN_SKIN_MM = 0.084  # an umbilical vein closer than this to the body wall is the cord insertion,
#                       not the intrahepatic vein of the AC plane (on validation only a vein at
#                       the wall told them apart: the nets' vein outlines are too rough for more)

#: The plane thresholds by name, what :func:`assess_plane` applies unless told otherwise.
PLANE_THRESHOLDS = {"MIN_PLANE_AXIS_RATIO": MIN_PLANE_AXIS_RATIO, "VEIN_SKIN_MM": VEIN_SKIN_MM}

NOT_MEASURED = "AC not measured"
NO_BOUNDARY = "no abdomen boundary found"


@dataclasses.dataclass(frozen=True)
class Landmark:
    """The largest connected component of one class: centroid (px) and area (mm^2).

    ``wall_gap_mm``: how far the component stays inside the abdomen ellipse it was sought in,
    its pixel nearest the ellipse measured radially (0 where it reaches or crosses it); None
    without an ellipse.
    """

    x: float
    y: float
    area_mm2: float
    wall_gap_mm: float | None = None


@dataclasses.dataclass(frozen=True)
class Support:
    """How well a class map supports a fitted abdomen ellipse: what the trust rules read.

    ``coverage``: share of the perimeter near inlier wall points (:func:`coverage`);
    ``largest_gap``: share of the perimeter in its longest stretch without them
    (:func:`largest_gap`);
    ``residual_mm``: RMS radial distance of the inliers to the ellipse; ``fluid_share``: share of
    the ellipse's area classified amniotic fluid (a wall fit that swallowed fluid);
    ``outside_share``: share of its area outside the fan or the image (drawn, not seen);
    ``axis_ratio``: b / a.
    """

    coverage: float
    largest_gap: float
    residual_mm: float
    fluid_share: float
    outside_share: float
    axis_ratio: float


@dataclasses.dataclass(frozen=True)
class Rule:
    """One trust rule: ``Support.<field>`` must be at least (``lower``) or at most ``limit``, the
    module constant named ``constant``."""

    field: str
    constant: str
    limit: float
    lower: bool
    problem: str  # what is wrong when the rule fails, in plain words
    unit: str = "%"

    def fails(self, value: float, limit: float | None = None) -> bool:
        limit = self.limit if limit is None else limit
        return value < limit if self.lower else value > limit

    def reason(self, value: float, limit: float | None = None) -> str:
        limit = self.limit if limit is None else limit
        show = ((lambda v: f"{v:.0%}") if self.unit == "%" else (lambda v: f"{v:.2f} {self.unit}"))
        return f"{self.problem} {show(value)} {'<' if self.lower else '>'} {show(limit)})"


TRUST_RULES = (
    Rule("coverage", "MIN_COVERAGE", MIN_COVERAGE, True,
         "abdomen boundary too incomplete (share of the fit's perimeter on the wall"),
    Rule("largest_gap", "MAX_GAP", MAX_GAP, False,
         "abdomen boundary unseen over too long a stretch (share of the fit's perimeter"),
    Rule("residual_mm", "MAX_RESIDUAL_MM", MAX_RESIDUAL_MM, False,
         "body wall too ragged for an ellipse (RMS distance of the wall points", "mm"),
    Rule("fluid_share", "MAX_FLUID_SHARE", MAX_FLUID_SHARE, False,
         "the fit takes in amniotic fluid (share of its area"),
    Rule("outside_share", "MAX_OUTSIDE_SHARE", MAX_OUTSIDE_SHARE, False,
         "the fit reaches beyond the scan (share of its area outside the fan"),
)


def in_force() -> dict[str, dict[str, float]]:
    """What :func:`measure` applies unless told otherwise: ``{"trust": {Support field: limit},
    "plane": {threshold name: value}}``. An evaluation records it, so numbers measured under
    other limits can be told stale and measured again."""
    return {"trust": {rule.field: rule.limit for rule in TRUST_RULES},
            "plane": dict(PLANE_THRESHOLDS)}


@dataclasses.dataclass(frozen=True, eq=False)
class Measurement:
    """What :func:`measure` found in one class map.

    ``points`` are the kept boundary points, (N, 2) as (x, y); ``inliers`` marks those on the
    fitted ellipse. ``fit`` is the fitted ellipse (None when nothing plausible fits) and
    ``support`` what the class map says for it; ``ellipse`` and ``ac_mm`` are the measured
    ellipse and AC, None when the support fails a trust rule (:data:`TRUST_RULES`) or nothing
    fits: the reason then starts with :data:`NOT_MEASURED`. ``reasons`` says why the plane was
    not accepted (empty when it was).
    """

    ellipse: Ellipse | None
    ac_mm: float | None
    accepted: bool
    reasons: tuple[str, ...]
    points: np.ndarray
    inliers: np.ndarray
    stomach: Landmark | None
    vein: Landmark | None
    spacing_mm: float
    fit: Ellipse | None = None
    support: Support | None = None

    @property
    def n_boundary_points(self) -> int:
        """Number of kept boundary points."""
        return len(self.points)

    @property
    def inlier_fraction(self) -> float:
        """Share of the boundary points on the ellipse (0 without points)."""
        return float(self.inliers.mean()) if len(self.inliers) else 0.0


# --------------------------------------------------------------------------- boundary

def check_map(class_map: np.ndarray, spacing_mm: float, values=CLASS_VALUES) -> np.ndarray:
    """A 2-D class map of the classes ``values`` (the patch classifier's unless given; None: any)
    and a positive spacing, or ValueError saying which is wrong."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"a class map is 2-D, got shape {class_map.shape}")
    unknown = np.setdiff1d(np.unique(class_map), values) if values is not None else ()
    if len(unknown):
        raise ValueError(f"unknown class values {unknown.tolist()}; expected {values}")
    if not spacing_mm > 0:
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm}")
    return class_map


def majority_filter(class_map: np.ndarray, values=CLASS_VALUES) -> np.ndarray:
    """Each pixel takes the most frequent class of its 3x3 neighbourhood (of the classes
    ``values``); ties keep its own."""
    votes = np.stack([ndimage.uniform_filter((class_map == c).astype(np.float32), 3,
                                             mode="nearest") for c in values])
    own = np.stack([class_map == c for c in values])
    winner = np.argmax(votes + 0.5 / 9 * own, axis=0)  # half a vote: ties go to the current class
    return np.asarray(values, class_map.dtype)[winner]


def _outline(region: np.ndarray, fluid: np.ndarray, near_shadow: np.ndarray,
             near_edge: np.ndarray, max_hole_px: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Kept outline points (x, y) of one padded region, their outward unit normals (x, y), and
    the share of the region's non-shadowed outline that faces fluid."""
    # Small holes are mislabelled pixels inside the body; large ones may be fluid between the
    # abdomen and tissue it touches, whose far side is no body wall.
    region = morphology.remove_small_holes(region, max_size=int(max_hole_px))
    contours = skmeasure.find_contours(region.astype(np.float32), 0.5)
    if not contours:  # the region filled the whole map (its padding ring counted as a hole)
        return np.empty((0, 2)), np.empty((0, 2)), 0.0
    rc = np.unique(np.concatenate(contours), axis=0)
    # Each sub-pixel point lies half-way between a region pixel and an outside one.
    lo, hi = np.floor(rc).astype(int), np.ceil(rc).astype(int)
    sign = np.where(region[lo[:, 0], lo[:, 1]], 1, -1)[:, None]
    outward = (sign * (hi - lo))[:, ::-1].astype(float)

    def touches(flags: np.ndarray) -> np.ndarray:
        return flags[lo[:, 0], lo[:, 1]] | flags[hi[:, 0], hi[:, 1]]

    shadowed = touches(near_shadow)
    keep = touches(fluid) & ~shadowed & ~touches(near_edge)
    visible = np.count_nonzero(~shadowed)
    enclosure = np.count_nonzero(keep) / visible if visible else 0.0
    return rc[keep][:, ::-1] - 1.0, outward[keep], enclosure  # - 1: undo the padding


def boundary_points(class_map: np.ndarray, spacing_mm: float,
                    min_body_mm2: float = MIN_BODY_MM2) -> tuple[np.ndarray, np.ndarray]:
    """The abdomen's body wall where it faces amniotic fluid: points and outward normals.

    Returns two (N, 2) arrays of (x, y): sub-pixel points, and unit normals pointing from the
    body into the fluid. See the module docstring for the rule that picks the abdomen among the
    body regions. Both are empty when no region of at least ``min_body_mm2`` borders fluid.
    """
    labels = np.pad(majority_filter(check_map(class_map, spacing_mm)), 1,
                    constant_values=OUTSIDE)
    margin = ndimage.generate_binary_structure(2, 1)
    near_shadow = ndimage.binary_dilation(labels == SHADOW, margin, EDGE_MARGIN_PX)
    edge = labels == OUTSIDE
    edge[[0, 1, -2, -1], :] = edge[:, [0, 1, -2, -1]] = True  # padding and the image's own border
    near_edge = ndimage.binary_dilation(edge, margin, EDGE_MARGIN_PX)
    fluid = labels == FLUID
    landmarks = np.isin(labels, (STOMACH, VEIN))
    min_px = min_body_mm2 / spacing_mm ** 2

    regions, count = ndimage.label(np.isin(labels, BODY_CLASSES))
    areas = np.bincount(regions.ravel(), minlength=count + 1)
    best, best_key = (np.empty((0, 2)), np.empty((0, 2))), None
    for index in np.flatnonzero(areas[1:] >= min_px) + 1:
        region = regions == index
        points, outward, enclosure = _outline(region, fluid, near_shadow, near_edge, min_px)
        if len(points) < MIN_BOUNDARY_POINTS:
            continue
        key = (enclosure >= 0.5, bool(np.any(landmarks & region)), enclosure)
        if best_key is None or key > best_key:
            best, best_key = (points, outward), key
    return best


# --------------------------------------------------------------------------- ellipse fitting

def _distance(conic: np.ndarray, x: np.ndarray, y: np.ndarray,
              outward: np.ndarray | None) -> np.ndarray:
    """Sampson distances of points (n,) to conics (k, 6): (k, n).

    Infinite where a point's ``outward`` normal (n, 2) points into the ellipse: the body wall
    has fluid outside, so such an edge (tissue across a fluid pocket) is never on the abdomen.
    """
    distance, gradient = sampson(conic, x, y)
    if outward is not None:
        distance[(gradient * outward).sum(axis=-1) <= 0] = np.inf
    return distance


def _msac(distance: np.ndarray, threshold: float) -> np.ndarray:
    """MSAC cost per hypothesis: squared distances, truncated at the inlier threshold."""
    return (np.minimum(np.nan_to_num(distance, nan=threshold), threshold) ** 2).sum(axis=-1)


def _implausible(params: np.ndarray, semi_axes_px: tuple[float, float],
                 min_axis_ratio: float) -> np.ndarray:
    """Which (..., 5) ellipses are too small, too large, too eccentric or not ellipses."""
    major, minor = params[..., 2], params[..., 3]
    with np.errstate(invalid="ignore"):
        ok = ((minor >= semi_axes_px[0]) & (major <= semi_axes_px[1])
              & (minor >= min_axis_ratio * major))
    return ~ok


def _rejection(params: np.ndarray, spacing_mm: float, semi_axes_mm: tuple[float, float],
               min_axis_ratio: float) -> str:
    """A sentence on why an ellipse (5,) is rejected."""
    if np.isnan(params).any():
        return "abdomen boundary is not elliptical (no ellipse fits it)"
    major, minor = params[2] * spacing_mm, params[3] * spacing_mm
    if minor < semi_axes_mm[0]:
        return f"abdomen fit too small (semi-minor axis {minor:.1f} mm < {semi_axes_mm[0]:g} mm)"
    if major > semi_axes_mm[1]:
        return f"abdomen fit too large (semi-major axis {major:.1f} mm > {semi_axes_mm[1]:g} mm)"
    return f"abdomen fit too eccentric (axis ratio {minor / major:.2f} < {min_axis_ratio:g})"


def fit_ellipse(points: np.ndarray, spacing_mm: float, outward: np.ndarray | None = None,
                rng_seed: int = 0, iterations: int = 2000, inlier_mm: float = INLIER_MM,
                semi_axes_mm: tuple[float, float] = SEMI_AXES_MM,
                min_axis_ratio: float = MIN_AXIS_RATIO,
                ) -> tuple[Ellipse | None, np.ndarray, str | None]:
    """Robust ellipse through boundary points (x, y): RANSAC, then least squares on the inliers.

    Hypotheses are 5-point direct fits; only those with semi-axes within ``semi_axes_mm`` and
    ``b / a >= min_axis_ratio`` compete, scored by the truncated squared Sampson distance with
    threshold ``inlier_mm``. With ``outward`` normals (from :func:`boundary_points`) a point only
    counts when its fluid side is outside the ellipse. Returns ``(ellipse, inliers, reason)``:
    ellipse None with a reason when nothing plausible fits. Whether the class map supports the
    ellipse well enough to measure it is :func:`support`'s and :func:`untrusted`'s question.
    Deterministic for a given ``rng_seed``.
    """
    points = np.asarray(points, float).reshape(-1, 2)
    inliers = np.zeros(len(points), bool)
    if len(points) < MIN_BOUNDARY_POINTS:
        return None, inliers, f"{NO_BOUNDARY} (only {len(points)} boundary points)"
    frame = Conditioned.of(points)
    x, y, scale = frame.x, frame.y, frame.scale
    threshold = inlier_mm / spacing_mm / scale
    limits = (semi_axes_mm[0] / spacing_mm / scale, semi_axes_mm[1] / spacing_mm / scale)

    rng = np.random.default_rng(rng_seed)
    samples = np.argpartition(rng.random((iterations, len(points))), 5, axis=1)[:, :5]
    conics = direct_fit(x[samples], y[samples])
    conics = conics[~_implausible(conic_params(conics), limits, min_axis_ratio)]
    if len(conics) == 0:
        return None, inliers, _rejection(frame.to_pixels(direct_fit(x, y)), spacing_mm,
                                         semi_axes_mm, min_axis_ratio)
    cost = _msac(_distance(conics, x, y, outward), threshold)
    # Local optimisation: when the inlier share is low (fluid-facing tissue beyond the fluid)
    # the best minimal samples are only near the optimum; least squares on their inliers
    # finishes the job.
    refined = [_refine(start, x, y, outward, threshold)
               for start in conics[np.argsort(cost)[:REFINED_HYPOTHESES]]]
    conic = min(refined, key=lambda c: _msac(_distance(c[None], x, y, outward), threshold)[0])
    inliers = _distance(conic[None], x, y, outward)[0] < threshold
    params = frame.to_pixels(conic)
    if _implausible(params, (semi_axes_mm[0] / spacing_mm, semi_axes_mm[1] / spacing_mm),
                    min_axis_ratio):
        return None, inliers, _rejection(params, spacing_mm, semi_axes_mm, min_axis_ratio)
    cx, cy, a, b, angle = params.tolist()
    return Ellipse(cx, cy, a, b, math.degrees(angle)), inliers, None


def _refine(conic: np.ndarray, x: np.ndarray, y: np.ndarray, outward: np.ndarray | None,
            threshold: float, rounds: int = 3) -> np.ndarray:
    """Refit a conic on its inliers a few times (the inlier set moves with the fit)."""
    for _ in range(rounds):
        near = _distance(conic[None], x, y, outward)[0] < threshold
        if near.sum() < 5:
            break
        conic = direct_fit(x[near], y[near])
    return conic


def _occupied(ellipse: Ellipse, points: np.ndarray) -> np.ndarray:
    """Which of the ellipse's :data:`COVERAGE_BINS` 10-degree sectors hold any of ``points``.

    Sectors are equal steps of the eccentric anomaly, close enough to equal arcs for the
    rounded ellipses accepted here.
    """
    occupied = np.zeros(COVERAGE_BINS, bool)
    if len(points):
        u, v = ellipse_frame(ellipse, points[:, 0], points[:, 1])
        anomaly = np.arctan2(v / ellipse.b, u / ellipse.a)
        sectors = np.floor((anomaly + np.pi) / (2 * np.pi) * COVERAGE_BINS).astype(int)
        occupied[np.clip(sectors, 0, COVERAGE_BINS - 1)] = True
    return occupied


def coverage(ellipse: Ellipse, points: np.ndarray) -> float:
    """Share of the ellipse's perimeter near ``points`` (x, y): occupied 10-degree sectors."""
    return float(_occupied(ellipse, points).mean())


def largest_gap(ellipse: Ellipse, points: np.ndarray) -> float:
    """Share of the perimeter in the longest run of sectors without ``points`` (x, y).

    Scattered gaps (shadows) cost an ellipse little; one long gap leaves that side drawn by
    extrapolation, where a wrong fit goes unseen.
    """
    occupied = _occupied(ellipse, points)
    if not occupied.any():
        return 1.0
    start = int(np.argmax(occupied))  # roll an occupied sector to the front: no run wraps
    runs = np.diff(np.flatnonzero(np.append(np.roll(occupied, -start), True))) - 1
    return float(runs.max(initial=0) / COVERAGE_BINS)


def residual_mm(ellipse: Ellipse, points: np.ndarray, spacing_mm: float) -> float:
    """RMS radial distance (mm) of points to an ellipse, ``(rho - 1) sqrt(a b)`` per point."""
    if len(points) == 0:
        return math.inf
    rho = normalized_radius(ellipse, points[:, 0], points[:, 1])
    return float(np.sqrt(np.mean(((rho - 1) * math.sqrt(ellipse.a * ellipse.b)) ** 2)) * spacing_mm)


def support(ellipse: Ellipse, wall: np.ndarray, class_map: np.ndarray,
            spacing_mm: float) -> Support:
    """What the class map (majority-filtered) says for ``ellipse``, ``wall`` its inlier points."""
    inside = ellipse_mask(ellipse, class_map.shape)
    area = max(ellipse.area, 1.0)
    seen = np.count_nonzero(inside & (class_map != OUTSIDE))
    return Support(coverage=coverage(ellipse, wall), largest_gap=largest_gap(ellipse, wall),
                   residual_mm=residual_mm(ellipse, wall, spacing_mm),
                   fluid_share=float(np.count_nonzero(inside & (class_map == FLUID)) / area),
                   outside_share=float(max(0.0, 1 - seen / area)),
                   axis_ratio=ellipse.b / ellipse.a)


def untrusted(found: Support, limits: dict[str, float] | None = None) -> str | None:
    """The first trust rule (:data:`TRUST_RULES`) ``found`` fails, as a sentence; None if none.

    ``limits`` (field -> limit) replace the rules' own, as :mod:`fetal_biometry.measure.thresholds`
    does when it chooses them."""
    limits = limits or {}
    for rule in TRUST_RULES:
        value = getattr(found, rule.field)
        if rule.fails(value, limits.get(rule.field)):
            return rule.reason(value, limits.get(rule.field))
    return None


# --------------------------------------------------------------------------- plane

def find_landmark(class_map: np.ndarray, cls: int, spacing_mm: float, min_area_mm2: float,
                  within: Ellipse | None = None) -> Landmark | None:
    """The largest 4-connected component of class ``cls`` of at least ``min_area_mm2``.

    With ``within``, a component whose centroid lies inside that ellipse is preferred to a
    larger one outside: the stomach bubble is sought in the abdomen, not in the anechoic
    amniotic fluid around it, which a classifier can mistake for it; its ``wall_gap_mm`` is
    measured to that ellipse.
    """
    components, count = ndimage.label(np.asarray(class_map) == cls)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:] * spacing_mm ** 2
    labels = [int(i) + 1 for i in np.argsort(-sizes, kind="stable") if sizes[i] >= min_area_mm2]
    if not labels:
        return None
    centres = ndimage.center_of_mass(np.ones_like(components), components, labels)
    chosen = 0
    if within is not None:
        inside = [i for i, (y, x) in enumerate(centres) if normalized_radius(within, x, y) <= 1]
        chosen = inside[0] if inside else 0
    y, x = centres[chosen]
    gap = None
    if within is not None:
        rows, cols = np.nonzero(components == labels[chosen])
        rho = normalized_radius(within, cols, rows).max()
        gap = max(0.0, float(1 - rho)) * math.sqrt(within.a * within.b) * spacing_mm
    return Landmark(float(x), float(y), float(sizes[labels[chosen] - 1]), gap)


def assess_plane(ellipse: Ellipse | None, stomach: Landmark | None, vein: Landmark | None,
                 spacing_mm: float, plane: dict[str, float] | None = None) -> list[str]:
    """Reasons the plane is not an acceptable AC plane; empty when it is.

    Needs the stomach bubble and the umbilical vein both seen, their centroids inside the
    ellipse and their areas at most ``MAX_STOMACH_SHARE`` / ``MAX_VEIN_SHARE`` of its area; an
    ellipse no more elongated than ``MIN_PLANE_AXIS_RATIO`` (an oblique cut is an elongated
    oval); and a vein that stays more than ``VEIN_SKIN_MM`` inside the body wall (one reaching
    the skin line is the cord insertion, below the AC plane). ``plane`` replaces those two
    thresholds (name -> value), as :mod:`fetal_biometry.measure.thresholds` needs to try others.
    """
    plane = {**PLANE_THRESHOLDS, **(plane or {})}
    min_ratio, vein_skin = plane["MIN_PLANE_AXIS_RATIO"], plane["VEIN_SKIN_MM"]
    reasons = []
    if ellipse is not None and ellipse.b / ellipse.a < min_ratio:
        reasons.append(f"abdomen too elongated for a transverse section, the plane is oblique "
                       f"(axis ratio {ellipse.b / ellipse.a:.2f} < {min_ratio:g})")
    for name, landmark, max_share in (("stomach bubble", stomach, MAX_STOMACH_SHARE),
                                      ("umbilical vein", vein, MAX_VEIN_SHARE)):
        if landmark is None:
            reasons.append(f"{name} not seen")
        elif ellipse is not None:
            share = landmark.area_mm2 / (ellipse.area * spacing_mm ** 2)
            if normalized_radius(ellipse, landmark.x, landmark.y) > 1:
                reasons.append(f"{name} outside the abdomen")
            elif share > max_share:
                reasons.append(f"{name} implausibly large ({share:.0%} of the abdomen)")
    if vein is not None and vein.wall_gap_mm is not None and vein.wall_gap_mm < vein_skin \
            and not any(r.startswith("umbilical vein") for r in reasons):
        reasons.append(f"umbilical vein reaches the skin line, the cord insertion is below the "
                       f"AC plane ({vein.wall_gap_mm:.1f} mm from the wall < {vein_skin:g} mm)")
    return reasons


def measure(class_map: np.ndarray, spacing_mm: float, rng_seed: int = 0,
            limits: dict[str, float] | None = None,
            plane: dict[str, float] | None = None) -> Measurement:
    """Ellipse, AC (mm) and plane acceptance for one class map; never raises on a poor map.

    The AC is only measured when the fit's support passes the trust rules (``limits`` replace
    their limits, field -> value); otherwise the first reason is ``"AC not measured: ..."``.
    ``plane`` replaces the plane thresholds (:func:`assess_plane`).
    """
    class_map = check_map(class_map, spacing_mm)
    points, outward = boundary_points(class_map, spacing_mm)
    # Landmarks and support on the majority-filtered map: isolated wrong pixels are no evidence.
    filtered = majority_filter(class_map)
    found = None
    if len(points):
        fit, inliers, problem = fit_ellipse(points, spacing_mm, outward, rng_seed)
    else:
        fit, inliers = None, np.zeros(0, bool)
        problem = f"{NO_BOUNDARY} (no body region bordered by amniotic fluid)"
    if fit is not None:
        found = support(fit, points[inliers], filtered, spacing_mm)
        problem = untrusted(found, limits)
    ellipse = None if problem else fit
    stomach = find_landmark(filtered, STOMACH, spacing_mm, MIN_STOMACH_MM2, ellipse)
    vein = find_landmark(filtered, VEIN, spacing_mm, MIN_VEIN_MM2, ellipse)
    reasons = ([f"{NOT_MEASURED}: {problem}"] if problem else []) + \
        assess_plane(ellipse, stomach, vein, spacing_mm, plane)
    ac_mm = None if ellipse is None else ellipse_perimeter(ellipse.a, ellipse.b) * spacing_mm
    return Measurement(ellipse, ac_mm, not reasons, tuple(reasons), points, inliers,
                       stomach, vein, float(spacing_mm), fit, found)


# --------------------------------------------------------------------------- weight

def hadlock_efw(ac_mm: float, fl_mm: float, hc_mm: float | None = None,
                bpd_mm: float | None = None) -> float:
    """Estimated fetal weight in grams, Hadlock et al. (1985); measurements in mm.

    ``bpd_mm`` is Hadlock's biparietal diameter, outer-to-inner. With whichever of head
    circumference and biparietal diameter were measured (all in cm inside the formulas)::

        AC, FL, HC, BPD: log10 EFW = 1.3596 - 0.00386 AC FL + 0.0064 HC + 0.00061 BPD AC
                                     + 0.0424 AC + 0.174 FL
        AC, FL, HC:      log10 EFW = 1.326 - 0.00326 AC FL + 0.0107 HC + 0.0438 AC + 0.158 FL
        AC, FL, BPD:     log10 EFW = 1.335 - 0.0034 AC FL + 0.0316 BPD + 0.0457 AC + 0.1623 FL
        AC, FL:          log10 EFW = 1.304 + 0.05281 AC + 0.1938 FL - 0.004 AC FL
    """
    ac, fl = ac_mm / 10, fl_mm / 10
    if hc_mm is not None and bpd_mm is not None:
        hc, bpd = hc_mm / 10, bpd_mm / 10
        log_weight = (1.3596 - 0.00386 * ac * fl + 0.0064 * hc + 0.00061 * bpd * ac
                      + 0.0424 * ac + 0.174 * fl)
    elif hc_mm is not None:
        log_weight = 1.326 - 0.00326 * ac * fl + 0.0107 * hc_mm / 10 + 0.0438 * ac + 0.158 * fl
    elif bpd_mm is not None:
        log_weight = 1.335 - 0.0034 * ac * fl + 0.0316 * bpd_mm / 10 + 0.0457 * ac + 0.1623 * fl
    else:
        log_weight = 1.304 + 0.05281 * ac + 0.1938 * fl - 0.004 * ac * fl
    return 10 ** log_weight
