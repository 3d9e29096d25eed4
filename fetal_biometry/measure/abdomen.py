"""The AC from the abdomen a segmenter outlines, with the fluid boundary as a second opinion.

A segmenter's class map (:data:`fetal_biometry.labels.SEGMENTER_VALUES`) names the abdomen
itself, so its outline needs no amniotic fluid around it: an abdomen lying against the uterine
wall or the placenta is measured too. :func:`measure` works in five steps:

1. **Region** (:func:`abdomen_region`): the map cleaned by a 3x3 majority vote; the pixels of
   :data:`~fetal_biometry.labels.ABDOMEN_REGION` (abdomen, stomach bubble, umbilical vein, spine,
   rib), holes filled (shadow cast inside the body by the spine or a rib, the stomach's
   edge), the largest 4-connected component.
2. **Outline** (:func:`outline`): its sub-pixel contour; a point is kept as wall when it is
   more than :data:`~fetal_biometry.biometry.EDGE_MARGIN_PX` pixels from shadow, from outside
   the fan and from the image border, where the wall is hidden (the abdomen's label stops at a
   shadow: the fit bridges that stretch, never fits it).
3. **Ellipse**: the project's fit (:func:`fetal_biometry.biometry.fit_ellipse`: RANSAC over
   5-point direct fits, refit on the inliers), each point's outward normal required to point out
   of the ellipse.
4. **Trust** (:class:`Support`, :data:`TRUST_RULES`): inlier wall points around enough of the
   perimeter, close to it, the outline seen (in the fan, out of shadow) over enough of its
   length, the region convex, its area (shadow inside the ellipse counted as unknown) close to
   the ellipse's, and the ellipse inside the fan.
5. **Second opinion**: the fluid-boundary method of :mod:`fetal_biometry.biometry` on the same
   map read as classifier classes. Where both measure, their ACs' relative difference (to their
   mean) is one more support number (``Support.disagreement``) and its limit
   :data:`DISAGREEMENT` the last trust rule: beyond it the AC is not reported, "AC not
   measured: the two methods disagree". Where the fluid method cannot measure (no fluid edge),
   the segmenter measures alone: that is no disagreement (0).

The plane verdict is :func:`fetal_biometry.biometry.assess_plane` (stomach bubble and umbilical
vein inside the ellipse, roundness, the vein off the skin line). The spine, now seen, is located
and reported (:attr:`Measurement.spine`) but is no rule of the verdict: decided on the validation
scans (simulator seed 2), where every plane, acceptable or not, shows its spine, so the rule
could tell no plane apart, and where it rejected 19 of 30 planes of the beam segmenter that
missed a spine it had (plane verdicts 0.267 right with it, 0.833 without).

The limits below are chosen on the validation split by :mod:`fetal_biometry.measure.thresholds`
(the same rule as the fluid method's, the disagreement margin one of them); never on held-out
or foreign scans.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import measure as skmeasure, morphology

from fetal_biometry.measure import biometry
from fetal_biometry.measure.ellipse import Ellipse, ellipse_mask, ellipse_perimeter
from fetal_biometry.labels import (ABDOMEN_REGION, OUTSIDE, SEGMENTER_VALUES, SHADOW, SPINE, STOMACH,
                                   VEIN, abdomen_labels, classifier_labels)

# Chosen on the validation scans (simulator seed 2, 30 scans) with the segmenter plan's nets
# (all nine: three encodings x three seeds; `python tools/experiments.py segmenter`,
# thresholds.SEGMENTED: the fluid method's rule; the
# table in docs/results.md). A rule never needed there keeps its loosest limit
# (thresholds.SEGMENTER_LOOSEST). The hand-set starting values were coverage 0.5, residual
# 1.5 mm, visible 0.3, convexity 0.85, area ratio 0.85-1.15, outside 0.002, disagreement 0.05.
MIN_COVERAGE = 0.514  # share of the perimeter near inlier wall points (shadows hide the rest)
MAX_RESIDUAL_MM = 0.708  # RMS distance of the inliers to the ellipse
MIN_VISIBLE = 0.200  # share of the region's outline seen as wall (in the fan, out of shadow)
MIN_CONVEXITY = 0.700  # region area / its convex hull's: a cross-section is convex
AREA_RATIO = (0.884, 1.500)  # region area (with shadow inside the ellipse) / ellipse area
MAX_OUTSIDE_SHARE = 0.500  # share of the ellipse's area outside the fan: all in view
#: Relative AC difference above which the two methods disagree (chosen on validation).
DISAGREEMENT = 0.099
#: The plane rules' thresholds for segmented maps (:func:`fetal_biometry.biometry.assess_plane`),
#: chosen on validation with the segmenter's nets (the fluid method's are biometry's).
PLANE_THRESHOLDS = {"MIN_PLANE_AXIS_RATIO": 0.760, "VEIN_SKIN_MM": 2.599}
MIN_SPINE_MM2 = 10.0  # an ossification centre of about 3 x 3 mm
DISAGREE = "the two methods disagree"


@dataclasses.dataclass(frozen=True)
class Support:
    """What a segmenter's map says for a fitted abdomen ellipse (see the module docstring)."""

    coverage: float
    residual_mm: float
    visible: float
    convexity: float
    area_ratio: float
    outside_share: float
    axis_ratio: float
    disagreement: float = 0.0  # relative AC difference to the fluid method; 0 when it did not measure


TRUST_RULES = (
    biometry.Rule("coverage", "MIN_COVERAGE", MIN_COVERAGE, True,
                  "abdomen outline too incomplete (share of the fit's perimeter on the wall"),
    biometry.Rule("residual_mm", "MAX_RESIDUAL_MM", MAX_RESIDUAL_MM, False,
                  "abdomen outline too ragged for an ellipse (RMS distance of the wall points", "mm"),
    biometry.Rule("visible", "MIN_VISIBLE", MIN_VISIBLE, True,
                  "abdomen outline hidden (share seen outside shadow and inside the fan"),
    biometry.Rule("convexity", "MIN_CONVEXITY", MIN_CONVEXITY, True,
                  "abdomen region not convex (area over its convex hull's"),
    biometry.Rule("area_ratio", "MIN_AREA_RATIO", AREA_RATIO[0], True,
                  "abdomen region fills too little of the fit (area over the ellipse's"),
    biometry.Rule("area_ratio", "MAX_AREA_RATIO", AREA_RATIO[1], False,
                  "abdomen region overflows the fit (area over the ellipse's"),
    biometry.Rule("outside_share", "MAX_OUTSIDE_SHARE", MAX_OUTSIDE_SHARE, False,
                  "the fit reaches beyond the scan (share of its area outside the fan"),
    biometry.Rule("disagreement", "DISAGREEMENT", DISAGREEMENT, False,
                  f"{DISAGREE} (relative difference of the segmented abdomen's and the fluid "
                  "boundary's ACs"),
)


@dataclasses.dataclass(frozen=True, eq=False)
class Measurement(biometry.Measurement):
    """:class:`fetal_biometry.biometry.Measurement` of the segmented abdomen, with the spine and
    the fluid-boundary method's measurement (``second``, None when it was not asked)."""

    spine: biometry.Landmark | None = None
    second: biometry.Measurement | None = None


def abdomen_region(class_map: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of the abdomen's classes, holes filled: (H, W) bool."""
    region = ndimage.binary_fill_holes(np.isin(class_map, ABDOMEN_REGION))
    components, count = ndimage.label(region)
    if count == 0:
        return region
    sizes = np.bincount(components.ravel())[1:]
    return components == int(np.argmax(sizes)) + 1


def outline(region: np.ndarray, class_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Wall points (x, y) of a region's outline, their outward unit normals, and the share of
    the outline kept (seen: away from shadow, the fan's edge and the image border)."""
    padded = np.pad(region, 1)
    labels = np.pad(class_map, 1, constant_values=OUTSIDE)
    margin = ndimage.generate_binary_structure(2, 1)
    hidden = labels == OUTSIDE
    hidden[[0, 1, -2, -1], :] = hidden[:, [0, 1, -2, -1]] = True
    hidden = ndimage.binary_dilation(hidden | (labels == SHADOW), margin, biometry.EDGE_MARGIN_PX)
    contours = skmeasure.find_contours(padded.astype(np.float32), 0.5)
    if not contours:
        return np.empty((0, 2)), np.empty((0, 2)), 0.0
    rc = np.unique(np.concatenate(contours), axis=0)
    lo, hi = np.floor(rc).astype(int), np.ceil(rc).astype(int)
    sign = np.where(padded[lo[:, 0], lo[:, 1]], 1, -1)[:, None]
    outward = (sign * (hi - lo))[:, ::-1].astype(float)
    keep = ~(hidden[lo[:, 0], lo[:, 1]] | hidden[hi[:, 0], hi[:, 1]])
    return rc[keep][:, ::-1] - 1.0, outward[keep], float(keep.mean())


def support(ellipse: Ellipse, wall: np.ndarray, region: np.ndarray, class_map: np.ndarray,
            visible: float, spacing_mm: float, differs: float = 0.0) -> Support:
    """What the map says for ``ellipse``; ``wall`` its inlier points, ``visible`` the share of
    the outline seen, ``differs`` the relative difference to the fluid method's AC."""
    inside = ellipse_mask(ellipse, class_map.shape)
    area = max(ellipse.area, 1.0)
    known = region | (inside & (class_map == SHADOW))  # shadow in the ellipse: unknown, not absent
    hull = morphology.convex_hull_image(known) if known.any() else known
    seen = np.count_nonzero(inside & (class_map != OUTSIDE))
    return Support(coverage=biometry.coverage(ellipse, wall),
                   residual_mm=biometry.residual_mm(ellipse, wall, spacing_mm), visible=visible,
                   convexity=float(known.sum() / max(1, hull.sum())),
                   area_ratio=float(known.sum() / area), outside_share=float(max(0.0, 1 - seen / area)),
                   axis_ratio=ellipse.b / ellipse.a, disagreement=float(differs))


def untrusted(found: Support, limits: dict[str, float] | None = None) -> str | None:
    """The first trust rule ``found`` fails, as a sentence; None if none. ``limits`` maps a
    rule's constant name to another limit."""
    limits = limits or {}
    for rule in TRUST_RULES:
        value = getattr(found, rule.field)
        limit = limits.get(rule.constant)
        if rule.fails(value, limit):
            return rule.reason(value, limit)
    return None


def in_force() -> dict:
    """The trust limits (the disagreement margin among them) and plane thresholds :func:`measure`
    applies, as an evaluation records them (numbers measured under others are measured again)."""
    return {"method": "segmented abdomen", "trust": {rule.constant: rule.limit for rule in TRUST_RULES},
            "plane": dict(PLANE_THRESHOLDS), "spine_rule": False}


def disagreement(first: float | None, second: float | None) -> float | None:
    """Relative difference of two ACs (to their mean); None unless both were measured."""
    if first is None or second is None:
        return None
    return abs(first - second) / ((first + second) / 2)


def measure(class_map: np.ndarray, spacing_mm: float, rng_seed: int = 0,
            limits: dict[str, float] | None = None, plane: dict[str, float] | None = None,
            second_opinion: bool = True) -> Measurement:
    """Ellipse, AC (mm) and plane verdict of a segmenter's class map (heart, lung and kidney read
    as abdomen: :func:`fetal_biometry.labels.abdomen_labels`); never raises on a poor map.

    ``limits`` replace trust limits (by constant name; ``DISAGREEMENT`` the margin), ``plane``
    the plane thresholds; ``second_opinion`` runs the fluid-boundary method and refuses an AC
    the two methods disagree on by more than the margin.
    """
    class_map = biometry.majority_filter(
        biometry.check_map(abdomen_labels(np.asarray(class_map)), spacing_mm, SEGMENTER_VALUES), SEGMENTER_VALUES)
    region = abdomen_region(class_map)
    points, outward, visible = outline(region, class_map)
    fit, found, inliers = None, None, np.zeros(len(points), bool)
    if np.count_nonzero(region) * spacing_mm ** 2 < biometry.MIN_BODY_MM2:
        problem = f"{biometry.NO_BOUNDARY} (no abdomen region of a plausible size)"
    else:
        fit, inliers, problem = biometry.fit_ellipse(points, spacing_mm, outward, rng_seed)
    second = biometry.measure(classifier_labels(class_map), spacing_mm, rng_seed) if second_opinion else None
    if fit is not None:
        fit_ac = ellipse_perimeter(fit.a, fit.b) * spacing_mm
        found = support(fit, points[inliers], region, class_map, visible, spacing_mm,
                        disagreement(fit_ac, None if second is None else second.ac_mm) or 0.0)
        problem = untrusted(found, limits)
    ellipse = None if problem else fit
    ac_mm = None if ellipse is None else ellipse_perimeter(ellipse.a, ellipse.b) * spacing_mm
    stomach = biometry.find_landmark(class_map, STOMACH, spacing_mm, biometry.MIN_STOMACH_MM2, ellipse)
    vein = biometry.find_landmark(class_map, VEIN, spacing_mm, biometry.MIN_VEIN_MM2, ellipse)
    spine = biometry.find_landmark(class_map, SPINE, spacing_mm, MIN_SPINE_MM2, ellipse)
    reasons = ([f"{biometry.NOT_MEASURED}: {problem}"] if problem else []) + \
        biometry.assess_plane(ellipse, stomach, vein, spacing_mm, {**PLANE_THRESHOLDS, **(plane or {})})
    return Measurement(ellipse, ac_mm, not reasons, tuple(reasons), points, inliers, stomach, vein,
                       float(spacing_mm), fit, found, spine, second)
