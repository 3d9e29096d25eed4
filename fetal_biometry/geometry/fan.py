"""Probe geometry from the image alone: find the imaged fan and fit its edges.

Where a scan comes without its probe geometry (an exported frame, a screenshot), the geometry
can be read off the image: a B-mode fan is a region of echoes (speckle) on a black background,
bounded by two straight side edges (beams) and, for a convex probe, two arcs around the apex.

:func:`detect_fan` finds the region: pixels brighter than the background (coloured overlay
pixels and flat areas, a viewer's gray panel or a gray bar, count as background), closed over
speckle gaps, opened to drop thin clutter (text, calipers, scales), components kept only
where they are large, thick, textured (a colour bar is smooth) and filled with echoes (text
panels and a probe's reverberations in air are strokes on black), and filled to their convex
hull, which bridges the dark fluid inside the fan.
:func:`estimate_geometry` takes the hull edges along which the echoes end over a long stretch
(and, on images larger than 256 px, the rim's long straight runs: where a gray bar, depth
ticks or screen text join the fan, its hull edge there is a chord) as candidate side edges,
refits them to those rim pixels, meets each left and right pair at the
apex (convex) or finds it parallel (linear), reads the start and end depths as medians over the
beams of where the echoes begin and the hull ends, and keeps the pair whose fan outline the
echoes follow best. On images larger than 256 px the best pair's edges are then refined to
where the echoes end along them (:func:`fan_edges.refined`: a line most of those points lie
on, which depth ticks, text or a shadow on the edge do not tilt), kept when better supported.
Where dark fluid lies against the edges, the echoes end before the fan
does and the region stops at the fetus; the echoes beyond the fluid (a posterior wall as
thin as a text line, dim sparse speckle at depth) look like clutter, so they are taken in only
once that first fan says they lie inside it, and the fan is fitted again: the better supported
of the two fits is kept. The fan may run out of the image; what the image cuts is taken as far as
it is visible, and the geometry's ``clip`` rectangle records that the image (or the searched
region) cuts it. Gray or white annotations closer to the fan than about 2 % of the image size
merge with it and can bend an edge (on large images the refinement mostly undoes that);
coloured ones cannot.

On a whole screen, pass the DICOM's ultrasound region (``region``): the search stays inside it,
and a fan cut by the region's border is recognised as cut (outside the region, a vertical cut
looks like a linear probe's edge). Below :data:`MIN_CONFIDENCE` the answer is
:class:`FanNotFound`, never a made-up geometry. What a DICOM says about its fan (the
transducer's kind, a sector region's reference pixel at the apex) narrows the candidates
(:class:`Priors`). The tools go through :func:`estimate_scan`, which never raises for a missing
fan: it reports why, and uses a fan below the threshold only where the user accepts it. Images
larger than :data:`MAX_SIDE` are estimated on a subsampled copy, so the cost is bounded whatever
the size.

The region is found in :mod:`~fetal_biometry.geometry.fan_region`, the side edges in
:mod:`~fetal_biometry.geometry.fan_edges`; this module fits the fan to them, scores it and
applies the file's priors.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry.geometry import probe as geom
from fetal_biometry.geometry.fan_edges import (MAX_EDGE_DEG, MAX_INWARD_DEG, Line, angle,
                                               normal_towards, refined, rim, side_edges)
from fetal_biometry.geometry.fan_region import (MAX_CHROMA, MIN_FILL, MIN_TEXTURE, FanNotFound,
                                                checked_hull, detect, detect_fan, disk, gray_of,
                                                hull_mask)

__all__ = ["PARALLEL_DEG", "MAX_EDGE_DEG", "MAX_INWARD_DEG", "MAX_CHROMA", "MIN_FILL",
           "MIN_CONFIDENCE", "MIN_TEXTURE", "MAX_SIDE", "FanNotFound", "detect_fan", "Line",
           "estimate_geometry", "Priors", "priors_from", "Estimate", "estimate_scan", "probe_of"]

PARALLEL_DEG = 1.5  # side edges closer than this in angle are parallel: a linear probe
# Chosen together by benchmarks/fan_validation.py --real --choose on simulated validation scans
# (seed 2) and the real images of split "choose" (tests/data/real/manifest.json): real screens
# are smoother and their fans less cleanly outlined than the simulator's.
MIN_CONFIDENCE = 0.4  # below: "no fan found"
MAX_SIDE = 1024  # larger images are estimated on a copy downscaled to this side, mapped back
# Side edges are refined (fan_edges.refined) on images larger than this: on the simulated
# validation scans (128 and 256 px; benchmarks/fan_validation.py) refinement made 29 more
# fans wrong (their edges fade into dark fluid), on the real 'choose' split it made none worse.
_REFINE_MIN_SIDE = 256
_REFINE_BAND = 0.03  # how far across an edge its refinement looks, share of the longer side
_BINS = 32  # lateral bins over which the depths of the arcs (or faces) are medians


@dataclasses.dataclass(frozen=True)
class Priors:
    """What a file says about its fan (a DICOM's ultrasound region and transducer).

    ``kind`` 'convex' or 'linear' (from TransducerType: SECTOR_*, CURVED LINEAR, IV_PHASED are
    convex, LINEAR linear) keeps only fans of that kind; ``apex`` (ReferencePixelX0/Y0, the
    origin of a sector region's coordinates, in the searched image's pixels) prefers convex fans
    whose apex lies within :data:`APEX_PRIOR_PX` (or 3 % of the width) of it, where any does.
    """

    kind: str | None = None
    apex: tuple[float, float] | None = None

    def describe(self) -> dict:
        return {k: v for k, v in (("kind", self.kind), ("apex", self.apex)) if v is not None}


APEX_PRIOR_PX = 20.0
_CONVEX_TRANSDUCERS = ("SECTOR", "CURVED", "CONVEX", "IV_PHASED", "PHASED")


def priors_from(transducer: str | None, reference_pixel: tuple[float, float] | None) -> Priors:
    """:class:`Priors` from a DICOM's TransducerType (or TransducerData) and region reference
    pixel (in the scan's pixels). The reference pixel is an apex prior only where the
    transducer is not linear (a linear region's origin is the face, not an apex)."""
    kind = None
    if transducer:
        if any(word in transducer for word in _CONVEX_TRANSDUCERS):
            kind = "convex"
        elif "LINEAR" in transducer:
            kind = "linear"
    return Priors(kind, reference_pixel if kind != "linear" else None)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The fan of a scan as the tools report it: the geometry (None: not found), its
    confidence, whether it was accepted below the threshold, the reason when not found, and
    the priors used (``source`` says all of it in a line)."""

    geometry: geom.Geometry | None
    confidence: float | None
    source: str
    reason: str | None = None
    low_confidence: bool = False
    priors: dict = dataclasses.field(default_factory=dict)


def estimate_scan(rgb: np.ndarray, priors: Priors = Priors(),
                  accept_below: float | None = None) -> Estimate:
    """The fan of one scan for the tools: never raises for a missing fan.

    A fan of confidence at least :data:`MIN_CONFIDENCE` is found; one below it but at least
    ``accept_below`` (the user's ``--accept-fan-below C``) is used and marked low-confidence;
    otherwise ``geometry`` is None and ``reason`` says why, with the confidence to 3 digits.
    """
    used = priors.describe()
    with_priors = f"; priors from the file: {used}" if used else ""
    floor = MIN_CONFIDENCE if accept_below is None else min(accept_below, MIN_CONFIDENCE)
    try:
        probe, confidence = estimate_geometry(rgb, min_confidence=floor, priors=priors)
    except FanNotFound as error:
        return Estimate(None, error.confidence, f"fan: not found ({error}){with_priors}",
                        str(error), priors=used)
    if confidence < MIN_CONFIDENCE:
        return Estimate(probe, confidence,
                        f"estimated from the image, LOW confidence {confidence:.3f} < "
                        f"{MIN_CONFIDENCE:.3f}, accepted by --accept-fan-below {accept_below:.3f}"
                        f"{with_priors}", low_confidence=True, priors=used)
    return Estimate(probe, confidence, f"estimated from the image (confidence {confidence:.3f}, "
                                       f"threshold {MIN_CONFIDENCE:.3f}){with_priors}", priors=used)


def probe_of(rgb: np.ndarray, transducer: str | None = None,
             reference_pixel: tuple[float, float] | None = None, given=None,
             accept_below: float | None = None) -> Estimate:
    """The rule every tool follows for a scan's probe: the ``--geometry`` file when given
    (ValueError naming it), else estimated from the scan's RGB pixels with the priors its file
    states (:func:`estimate_scan`: geometry None where no fan is found).

    ``rgb`` is the scan (or a loop's first frame) as displayed; ``transducer`` and
    ``reference_pixel`` are what its DICOM says (:class:`fetal_biometry.io.scans.ScanImage`,
    :class:`fetal_biometry.io.sequences.Sequence`), None for other files.
    """
    if given:
        return Estimate(geom.read_file(given, rgb.shape[:2]), 1.0, f"given ({given})")
    return estimate_scan(rgb, priors_from(transducer, reference_pixel), accept_below)


# --------------------------------------------------------------------------- depths

def _x_at(line: Line, y: float) -> float:
    point, direction = line
    return float(point[0] + (y - point[1]) * direction[0] / direction[1])


def _arc_depth(probe: geom.Geometry, rim: np.ndarray, cut: np.ndarray, nearest: bool) -> float | None:
    """Median over the central beams of the nearest (or farthest) depth of ``rim`` pixels.

    Beams whose extreme pixel is ``cut`` (on the image border) run out of the image and are
    skipped; where all do, the visible extreme is returned. None if no pixel is central.
    """
    depth, lateral = geom.image_to_beam(probe, rim[:, 0], rim[:, 1])
    lo, hi = geom.lateral_range(probe)
    margin = 0.1 * (hi - lo)  # keep clear of the side edges
    central = (lateral > lo + margin) & (lateral < hi - margin)
    if not central.any():
        return None
    depth, lateral, cut = depth[central], lateral[central], cut[central]
    count = _BINS
    if nearest and isinstance(probe, geom.ConvexProbe):
        # Bins at least 2 px wide where the echoes begin: a sector's tip is a few px across.
        arc = math.radians(hi - lo - 2 * margin) * float(depth.min())
        count = int(np.clip(arc / 2, 3, _BINS))
    bins = ((lateral - lo - margin) / (hi - lo - 2 * margin) * count).astype(int)
    order = np.lexsort((depth if nearest else -depth, bins))
    extreme = order[np.r_[True, np.diff(bins[order]) != 0]]
    seen = extreme[~cut[extreme]]
    if not seen.size:
        return float(depth.min() if nearest else depth.max())
    return float(np.median(depth[seen]))


def _geometry(left: Line, right: Line, echo_rim, hull_rim) -> geom.Geometry | None:
    """The probe whose side edges are ``left`` and ``right``; None if they make no fan.

    The start depth is where the echoes begin (the top arc is concave: the hull would
    bridge it), the end depth where the hull ends (it bridges dark patches at the bottom).
    """
    angles = angle(left[1]), angle(right[1])
    if abs(angles[1] - angles[0]) < PARALLEL_DEG:
        steer = (angles[0] + angles[1]) / 2
        x0 = _x_at(left, 0.0)
        probe = geom.LinearProbe((x0, 0.0), _x_at(right, 0.0) - x0, 0.0, 1.0, steer)
    elif angles[0] < angles[1]:
        (p, d), (q, e) = left, right
        t = np.linalg.solve(np.stack([d, -e], axis=1), q - p)[0]
        apex = p + t * d
        probe = geom.ConvexProbe((float(apex[0]), float(apex[1])), 0.0, 1.0, angles)
    else:
        return None  # the edges converge downwards
    lo, hi = geom.lateral_range(probe)
    if not lo < hi:
        return None  # the "left" edge lies right of the other
    start, end = _arc_depth(probe, *echo_rim, nearest=True), _arc_depth(probe, *hull_rim, nearest=False)
    if start is None or end is None or not 0 <= start < end:
        return None
    if isinstance(probe, geom.ConvexProbe):
        return geom.ConvexProbe(probe.apex, start, end, angles)
    origin = geom.beam_to_image(probe, start, 0.0)  # the face at the top of the strip
    return geom.LinearProbe((float(origin[0]), float(origin[1])), probe.width, 0.0, end - start, steer)


# --------------------------------------------------------------------------- confidence

def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _outline(probe: geom.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates of the fan's outline (side edges and arcs or faces), ~1 px apart."""
    (d0, d1), (l0, l1) = (probe.start_depth, probe.end_depth), geom.lateral_range(probe)
    convex = isinstance(probe, geom.ConvexProbe)
    pieces = []  # (depth, lateral) of the two side edges, then of the two arcs (or faces)
    for edge in (l0, l1):
        steps = np.linspace(d0, d1, math.ceil(d1 - d0) + 1)
        pieces.append((steps, np.full_like(steps, edge)))
    for arc in (d0, d1):
        length = math.radians(l1 - l0) * arc if convex else l1 - l0
        steps = np.linspace(l0, l1, math.ceil(length) + 1)
        pieces.append((np.full_like(steps, arc), steps))
    depth, lateral = (np.concatenate(parts) for parts in zip(*pieces))
    return geom.beam_to_image(probe, depth, lateral)


def _outline_support(probe: geom.Geometry, distance: np.ndarray) -> float:
    """Share of the fan's outline inside the image that runs along the echoes' rim
    (``distance``: to the nearest rim pixel); partial credit up to 2 px away, so that the
    closer of two nearly equal outlines scores higher."""
    x, y = (np.rint(v).astype(int) for v in _outline(probe))
    height, width = distance.shape
    visible = (x > 0) & (y > 0) & (x < width - 1) & (y < height - 1)
    return float(np.mean(np.clip(2 - distance[y[visible], x[visible]], 0, 1))) if visible.any() else 0.0



def estimate_geometry(image: np.ndarray, threshold: int = 8, min_texture: float = MIN_TEXTURE,
                      region: tuple[int, int, int, int] | None = None,
                      min_confidence: float = MIN_CONFIDENCE,
                      priors: Priors = Priors()) -> tuple[geom.Geometry, float]:
    """Estimate the probe geometry of a scan from the image alone.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8
        The scan as displayed; text, calipers, colour bars and colour Doppler boxes may be
        drawn on it. Give RGB where there is colour: coloured pixels are then ignored.
    threshold, min_texture
        See :func:`detect_fan`.
    region : (x0, y0, x1, y1), optional
        Search only there (x1, y1 exclusive), e.g. a DICOM ultrasound region of a screen; the
        geometry is still in the image's coordinates.
    min_confidence : float
        Below this confidence no fan is found (:data:`MIN_CONFIDENCE`).
    priors : Priors
        What the file says (probe kind, apex), in the image's pixels; see :class:`Priors`.

    Returns
    -------
    geometry : ConvexProbe or LinearProbe
        Side edges parallel within :data:`PARALLEL_DEG` give a linear probe (face at the top
        of the strip, ``start_depth`` 0), otherwise a convex one (the apex may lie outside
        the image). Depths and positions in pixels, angles in degrees from straight down.
        Where the fan runs out of the searched image (or region), e.g. a zoomed image, its
        ``clip`` is that rectangle; otherwise ``clip`` is None.
    confidence : float
        In [0, 1]: IoU of the estimated fan's convex hull with the detected hull, times the
        share of the estimated outline inside the image along which the echoes end (within
        1 px; partial credit to 2 px). Dark fluid against a fan edge lowers it: that stretch
        of the edge is not seen. Clean fans score above 0.9.

    Raises
    ------
    FanNotFound
        No fan in the image (see :func:`detect_fan`), no pair of straight side edges, or a
        best fan below ``min_confidence``; the message says which.

    Notes
    -----
    Images whose longer side exceeds :data:`MAX_SIDE` are estimated on a copy subsampled to
    that side (nearest pixels keep the speckle's contrast) and the geometry is scaled back,
    which bounds the cost: positions are then good to about the subsampling factor.
    """
    image = np.asarray(image)
    x0, y0 = 0, 0
    if region is not None:
        x0, y0, x1, y1 = (int(v) for v in region)
        image = image[max(y0, 0):y1, max(x0, 0):x1]
        x0, y0 = max(x0, 0), max(y0, 0)
        if min(image.shape[:2]) < 2:
            raise FanNotFound(f"the region {list(region)} holds no image")
    height, width = image.shape[:2]
    factor = max(height, width) / MAX_SIDE
    if factor > 1:  # subsampled before anything else: every step then costs as at MAX_SIDE
        image = cv2.resize(image, (max(2, round(width / factor)), max(2, round(height / factor))),
                           interpolation=cv2.INTER_NEAREST)
    small = gray_of(image)
    scale = width / small.shape[1], height / small.shape[0]
    if priors.apex is not None:  # into the searched (subsampled) image's pixels
        priors = dataclasses.replace(priors, apex=((priors.apex[0] - x0) / scale[0],
                                                   (priors.apex[1] - y0) / scale[1]))
    probe, confidence = _estimate(small, threshold, min_texture, priors)
    if confidence < min_confidence:
        raise FanNotFound(f"the best fan outline found has confidence {confidence:.3f}, below "
                          f"{min_confidence:.3f}: the image shows no clear fan", confidence)
    probe = _mapped(probe, scale, (x0, y0))
    x, y = _outline(probe)
    if (x.min() < x0 - 0.5 or y.min() < y0 - 0.5 or x.max() > x0 + width - 0.5
            or y.max() > y0 + height - 0.5):  # the fan runs out of what was searched
        probe = dataclasses.replace(probe, clip=(float(x0), float(y0), float(x0 + width - 1),
                                                 float(y0 + height - 1)))
    return probe, confidence


def _mapped(probe: geom.Geometry, scale: tuple[float, float], offset: tuple[int, int]) -> geom.Geometry:
    """``probe`` of a (subsampled) crop in the coordinates of the whole image."""
    (fx, fy), (dx, dy) = scale, offset
    if (fx, fy, dx, dy) == (1, 1, 0, 0):
        return probe
    f = (fx + fy) / 2
    point = probe.apex if isinstance(probe, geom.ConvexProbe) else probe.origin
    moved = (point[0] * fx + dx, point[1] * fy + dy)
    if isinstance(probe, geom.ConvexProbe):
        return geom.ConvexProbe(moved, probe.start_depth * f, probe.end_depth * f, probe.angles)
    return geom.LinearProbe(moved, probe.width * fx, probe.start_depth * f, probe.end_depth * f, probe.angle)


def _estimate(gray: np.ndarray, threshold: int, min_texture: float,
              priors: Priors) -> tuple[geom.Geometry, float]:
    """The best fan of an 8-bit gray image and its confidence (:func:`estimate_geometry`)."""
    echoes, hull, bright = detect(gray, threshold, min_texture)
    first = _best_fan(gray, echoes, hull, threshold, priors)
    # Where dark fluid lies against the edges, the echoes end before the fan does: the hull
    # stops at the fetus and only the top of each edge is seen. The echoes beyond the fluid
    # (a posterior wall as thin as a text line, dim sparse speckle at depth) cannot be told
    # from clutter by their looks, but they mark the fan's bottom and the lower ends of its
    # edges. Once the fan is known, what lies inside it (run on past the image, and a disk
    # wider) is taken in and the fan fitted again; clutter caught so (text below the fan)
    # makes a worse fan, so the better supported of the two is kept.
    deeper = _pieces_beyond(bright & ~echoes, hull, first[0])
    if not deeper.any():
        return first
    echoes = echoes | deeper
    try:
        second = _best_fan(gray, echoes, checked_hull(gray, echoes, threshold), threshold, priors)
    except FanNotFound:
        return first
    return max(first, second, key=lambda fit: fit[1])


def _pieces_beyond(mask: np.ndarray, hull: np.ndarray, probe: geom.Geometry) -> np.ndarray:
    """The connected pieces of ``mask`` that reach out of ``hull`` (those it holds move none
    of its edges) and lie mostly inside ``probe``'s fan, run on to any depth and grown by the
    closing's disk (so that an edge found a little inward cuts none of them off). Pieces are
    taken whole: one cut along an edge would lay rim pixels along it and confirm it."""
    point = probe.apex if isinstance(probe, geom.ConvexProbe) else probe.origin
    far = probe.start_depth + float(np.hypot(*mask.shape) + np.hypot(*point))  # past every pixel
    inside = geom.fan_mask(dataclasses.replace(probe, end_depth=far), mask.shape).astype(np.uint8)
    inside = cv2.dilate(inside, disk(mask.shape)[1])
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    index = np.arange(1, count)
    taken = np.r_[False, (ndimage.mean(inside, labels, index) > 0.5)
                  & (ndimage.minimum(hull, labels, index) == 0)]
    return taken[labels]


def _with_priors(fits: list[geom.Geometry], priors: Priors, width: int) -> list[geom.Geometry]:
    """The fits the priors allow: of the file's probe kind; near its apex, where any is."""
    if priors.kind is not None:
        fits = [g for g in fits if isinstance(g, geom.ConvexProbe) == (priors.kind == "convex")]
    if priors.apex is not None:
        tolerance = max(APEX_PRIOR_PX, 0.03 * width)
        near = [g for g in fits if isinstance(g, geom.ConvexProbe)
                and math.dist(g.apex, priors.apex) <= tolerance]
        fits = near or fits
    return fits


def _best_fan(gray: np.ndarray, echoes: np.ndarray, hull: np.ndarray, threshold: int,
              priors: Priors = Priors()) -> tuple[geom.Geometry, float]:
    """The fan whose outline the rim of ``echoes`` (and of their ``hull``) follows best, and
    its confidence."""
    echo_rim, hull_rim = rim(echoes), rim(hull)
    edge_rim = echo_rim[0][~echo_rim[1]]  # the image border is no fan edge
    lefts, rights = side_edges(hull, edge_rim, -1), side_edges(hull, edge_rim, 1)
    if not lefts or not rights:
        raise FanNotFound(f"no straight {'left' if not lefts else 'right'} side edge: "
                          "the textured region does not look like a fan")
    fits = _with_priors([g for left in lefts for right in rights
                         if (g := _geometry(left, right, echo_rim, hull_rim)) is not None
                         and not geom.problems(g, gray.shape)], priors, gray.shape[1])
    if not fits:
        raise FanNotFound("the side edges do not form a fan (they converge downwards or "
                          "leave no depth range)")
    off_rim = np.full(gray.shape, 255, np.uint8)
    off_rim[edge_rim[:, 1].astype(int), edge_rim[:, 0].astype(int)] = 0
    distance = cv2.distanceTransform(off_rim, cv2.DIST_L2, 3)
    supported = sorted(((_outline_support(g, distance), g) for g in fits), key=lambda item: -item[0])
    # The outline's support ranks the pairs cheaply; the IoU decides among the best few.
    confidence, best = max(((support * _iou(hull_mask(geom.fan_mask(g, gray.shape)), hull), g)
                            for support, g in supported[:3]), key=lambda item: item[0])
    if max(gray.shape) > _REFINE_MIN_SIDE:
        fine = _refined(gray, best, threshold, echo_rim, hull_rim)
        if fine is not best:  # the better supported of the two, as for the second look
            refined_confidence = _outline_support(fine, distance) * _iou(
                hull_mask(geom.fan_mask(fine, gray.shape)), hull)
            if refined_confidence > confidence:
                return fine, float(refined_confidence)
    return best, float(confidence)


def _refined(gray: np.ndarray, probe: geom.Geometry, threshold: int, echo_rim,
             hull_rim) -> geom.Geometry:
    """``probe`` with both side edges moved onto where the echoes end along them
    (:func:`fan_edges.refined`), or ``probe`` itself where an edge cannot be refined or the
    refined edges make no fan of the same kind."""
    band = max(4.0, _REFINE_BAND * max(gray.shape))
    lines = []
    for side, lateral in zip((-1, 1), geom.lateral_range(probe)):
        x, y = geom.beam_to_image(probe, np.array([probe.start_depth, probe.end_depth]),
                                  np.array([lateral, lateral]))
        start, end = np.array([x[0], y[0]]), np.array([x[1], y[1]])
        along = (end - start) / np.linalg.norm(end - start)
        outward = normal_towards(along, np.array([float(side), 0.0]))
        line = refined(gray, start, end, outward, band, threshold)
        if line is None:
            return probe
        lines.append(line)
    fine = _geometry(lines[0], lines[1], echo_rim, hull_rim)
    if fine is None or type(fine) is not type(probe) or geom.problems(fine, gray.shape):
        return probe
    return fine
