"""Probe geometry from the image alone: find the imaged fan and fit its edges.

Where a scan comes without its probe geometry (an exported frame, a screenshot), the geometry
can be read off the image: a B-mode fan is a region of echoes (speckle) on a black background,
bounded by two straight side edges (beams) and, for a convex probe, two arcs around the apex.

:func:`detect_fan` finds the region: pixels brighter than the background (coloured overlay
pixels count as background), closed over speckle gaps, opened to drop thin clutter (text,
calipers, scales), components kept only where they are large, thick, textured (a colour bar
is smooth) and filled with echoes (text panels and a probe's reverberations in air are
strokes on black), and filled to their convex hull, which bridges the dark fluid inside the fan.
:func:`estimate_geometry` takes the hull edges along which the echoes end over a long stretch
(and, on images larger than 256 px, the rim's long straight runs: where a gray bar, depth
ticks or screen text join the fan, its hull edge there is a chord) as candidate side edges,
refits them to those rim pixels, meets each left and right pair at the
apex (convex) or finds it parallel (linear), reads the start and end depths as medians over the
beams of where the echoes begin and the hull ends, and keeps the pair whose fan outline the
echoes follow best. Where dark fluid lies against the edges, the echoes end before the fan
does and the region stops at the fetus; the echoes beyond the fluid (a posterior wall as
thin as a text line, dim sparse speckle at depth) look like clutter, so they are taken in only
once that first fan says they lie inside it, and the fan is fitted again: the better supported
of the two fits is kept. The fan may run out of the image; what the image cuts is taken as far as
it is visible, and the geometry's ``clip`` rectangle records that the image (or the searched
region) cuts it. Gray or white annotations closer to the fan than about 2 % of the image size
merge with it and can bend an edge; coloured ones cannot.

On a whole screen, pass the DICOM's ultrasound region (``region``): the search stays inside it,
and a fan cut by the region's border is recognised as cut (outside the region, a vertical cut
looks like a linear probe's edge). Below :data:`MIN_CONFIDENCE` the answer is
:class:`FanNotFound`, never a made-up geometry. What a DICOM says about its fan (the
transducer's kind, a sector region's reference pixel at the apex) narrows the candidates
(:class:`Priors`). The tools go through :func:`estimate_scan`, which never raises for a missing
fan: it reports why, and uses a fan below the threshold only where the user accepts it. Images larger than :data:`MAX_SIDE` are
estimated on a subsampled copy, so the cost is bounded whatever the size.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry.geometry import probe as geom

PARALLEL_DEG = 1.5  # side edges closer than this in angle are parallel: a linear probe
MAX_EDGE_DEG = 80.0  # side edges are beams: never near horizontal ...
MAX_INWARD_DEG = 30.0  # ... nor leaning far towards the fan (bottom-arc tangents do)
MAX_CHROMA = 40  # channel spread above which an RGB pixel is a coloured overlay
MIN_FILL = 0.5  # share of echo pixels a region needs: speckle fills it, text strokes do not
# Chosen together by benchmarks/fan_validation.py --real --choose on simulated validation scans
# (seed 2) and the real images of split "choose" (tests/data/real/manifest.json): real screens
# are smoother and their fans less cleanly outlined than the simulator's.
MIN_CONFIDENCE = 0.2  # below: "no fan found"
MIN_TEXTURE = 2.0  # median local standard deviation a region needs to count as speckle
MAX_SIDE = 1024  # larger images are estimated on a copy downscaled to this side, mapped back
_CANDIDATES = 8  # best supported lines tried per side
_HOUGH_MIN_SIDE = 256  # larger images also try the rim's long straight runs as side edges
_INLIER_PX = 1.5
_WIDE_BAND = 0.004  # first refit band, share of the longer side (chosen on the real "choose" split)
_BINS = 32  # lateral bins over which the depths of the arcs (or faces) are medians


class FanNotFound(ValueError):
    """The image shows no fan: no textured region on a dark background with straight sides.

    ``confidence`` is the best outline's confidence where one was found but fell below the
    threshold, else None."""

    def __init__(self, message: str, confidence: float | None = None):
        super().__init__(message)
        self.confidence = confidence


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


def probe_of(scan, given=None, accept_below: float | None = None) -> Estimate:
    """The rule every tool follows for a scan's probe: the ``--geometry`` file when given
    (ValueError naming it), else estimated from the scan's RGB pixels with the priors its file
    states (:func:`estimate_scan`: geometry None where no fan is found).

    ``scan`` is a :class:`fetal_biometry.io.scans.ScanImage` (rgb, gray, transducer,
    reference_pixel).
    """
    if given:
        return Estimate(geom.read_file(given, scan.gray.shape), 1.0, f"given ({given})")
    return estimate_scan(scan.rgb, priors_from(scan.transducer, scan.reference_pixel), accept_below)


def _gray(image: np.ndarray) -> np.ndarray:
    """8-bit gray; in an RGB image, coloured pixels (overlays: calipers, measurement text,
    colour bars) become background, for B-mode echoes are gray."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit gray or RGB image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        return image
    rgb = image[..., :3]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray[rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2) > MAX_CHROMA] = 0
    return gray


def _local_std(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0))


def _disk(shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """The closing's radius and disk: they scale with the image (4 px at 256)."""
    radius = max(3, round(max(shape) / 64))
    return radius, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _echo_region(gray: np.ndarray, threshold: int, min_texture: float) -> tuple[np.ndarray, np.ndarray]:
    """Echo pixels (bool), clutter removed, before the hull; and all bright pixels, closed
    over speckle gaps, clutter kept."""
    radius, disk = _disk(gray.shape)
    # Black padding: morphology then treats the image's outside as background, so a fan
    # cut by the border is not eroded there and a black frame is not closed over.
    pad = 2 * radius + 3
    bright = np.pad(gray > threshold, pad).astype(np.uint8)
    closed = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, disk)  # gaps between sparse speckle
    core = cv2.morphologyEx(closed, cv2.MORPH_OPEN, disk)  # thin strokes: text, lines, marks
    count, labels = cv2.connectedComponents(core, connectivity=8)
    index = np.arange(1, count)
    area = ndimage.sum_labels(core, labels, index)
    # Text lines, scales and narrow colour bars, even closed into blocks, hold no disk twice
    # the closing's radius; the fan's parts do. Smooth regions (colour bars) are no speckle.
    inscribed = ndimage.maximum(cv2.distanceTransform(core, cv2.DIST_L2, 3), labels, index)
    texture = ndimage.median(np.pad(_local_std(gray), pad), labels, index)
    large = np.r_[False, (area >= 0.002 * gray.size) & (inscribed >= 2 * radius)
                  & (texture >= min_texture)]
    # A text panel or the reverberation lines of a probe in air close into blocks as large
    # and contrasted as speckle, but their strokes cover a third of them at most. Dim deep
    # echoes may be as sparse: they count where they join a filled part (within a disk).
    filled = large & np.r_[False, ndimage.mean(bright, labels, index) >= MIN_FILL]
    _, joined = cv2.connectedComponents(cv2.dilate(closed, disk), connectivity=8)
    keep = large & np.isin(ndimage.maximum(joined, labels, np.arange(count)),
                           joined[filled[labels]])
    # Opening rounds the fan's corners; grow the kept core back over the closed pixels.
    near = cv2.dilate(keep[labels].astype(np.uint8), disk)
    return (closed & near).astype(bool)[pad:-pad, pad:-pad], closed.astype(bool)[pad:-pad, pad:-pad]


def _hull_mask(mask: np.ndarray) -> np.ndarray:
    # The hull of the outer contours is the hull of all pixels, from far fewer points.
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros(mask.shape, np.uint8)
    if contours:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
    return hull.astype(bool)


def detect_fan(image: np.ndarray, threshold: int = 8, min_texture: float = MIN_TEXTURE) -> np.ndarray:
    """The imaged fan as a bool mask: the convex hull of the textured echo region.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8
        The scan as displayed (gray or RGB).
    threshold : int
        Gray level above which a pixel is an echo rather than the black background.
    min_texture : float
        Median local standard deviation (5 x 5 window) a region needs to count as speckle.

    Returns
    -------
    ndarray of bool, shape (H, W)
        Convex hull of the echo region. A convex fan's top arc is concave, so the hull also
        holds the dark cap between that arc and its chord. Echoes cut off by dark fluid that
        are too thin or sparse to be told from clutter (a posterior wall) are not in it:
        :func:`estimate_geometry` takes them in once it has found the side edges.

    Raises
    ------
    FanNotFound
        No textured region, or no dark background around it.
    """
    return _detect(_gray(image), threshold, min_texture)[1]


def _detect(gray: np.ndarray, threshold: int,
            min_texture: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The echo region, its convex hull (see :func:`detect_fan`) and all bright pixels
    (:func:`_echo_region`)."""
    echoes, bright = _echo_region(gray, threshold, min_texture)
    if not echoes.any():
        raise FanNotFound("no textured region: the image is blank, uniform, has no speckle "
                          "or only text")
    return echoes, _checked_hull(gray, echoes, threshold), bright


def _checked_hull(gray: np.ndarray, echoes: np.ndarray, threshold: int) -> np.ndarray:
    hull = _hull_mask(echoes)
    outside = gray[~hull]
    if outside.size < 0.01 * gray.size or np.mean(outside <= threshold) < 0.8:
        raise FanNotFound("the textured region has no dark background around it: not a fan")
    return hull


# --------------------------------------------------------------------------- side edges

Line = tuple[np.ndarray, np.ndarray]  # a point and the unit direction pointing down (+y)


def _hull_edges(hull: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the hull polygon that do not run along the image border: starts, ends and
    outward unit normals, (N, 2) each."""
    contours, _ = cv2.findContours(hull.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    vertices = cv2.convexHull(np.concatenate(contours))[:, 0].astype(float)
    starts, ends = vertices, np.roll(vertices, -1, axis=0)
    height, width = hull.shape
    on_border = np.zeros(len(starts), bool)
    for axis, limit in ((0, 0), (0, width - 1), (1, 0), (1, height - 1)):
        on_border |= (starts[:, axis] == limit) & (ends[:, axis] == limit)
    starts, ends = starts[~on_border], ends[~on_border]
    direction = ends - starts
    normals = np.stack([direction[:, 1], -direction[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    outward = np.sum(normals * ((starts + ends) / 2 - vertices.mean(axis=0)), axis=1)
    return starts, ends, normals * np.sign(outward)[:, None]


def _fit_line(points: np.ndarray) -> Line:
    """Total least squares line through ``points`` (x, y)."""
    centre = points.mean(axis=0)
    direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
    return centre, direction if direction[1] >= 0 else -direction


def _angle(direction: np.ndarray) -> float:
    return math.degrees(math.atan2(direction[0], direction[1]))


def _offsets(points: np.ndarray, line: Line, normal: np.ndarray) -> np.ndarray:
    """Signed distances of ``points`` from ``line``, positive along ``normal``."""
    return (points - line[0]) @ normal


def _normal(direction: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Unit normal of ``direction`` on the side of ``towards``."""
    normal = np.array([direction[1], -direction[0]])
    return normal if normal @ towards >= 0 else -normal


def _bands(size: int) -> list[float]:
    """Inlier bands of the successive refits for an image whose longer side is ``size``.

    On large real screens a hull edge is often a chord (from the fan's corner to where the
    display cuts the fan, or to a gray bar beside it) a few degrees off the edge: the rim
    pixels along the edge lie up to several pixels inside it. Wide bands first, narrowing,
    walk the line onto them; at 256 px and below every band is :data:`_INLIER_PX`, as the
    simulated validation scans (speckle, fluid against the edges) want it."""
    wide = _WIDE_BAND * size
    if wide <= _INLIER_PX:
        return [_INLIER_PX] * 3
    return [max(_INLIER_PX, wide * f) for f in (1.0, 2 / 3, 1 / 2, 1 / 3)] + [_INLIER_PX] * 2


def _refit(line: Line, normal: np.ndarray, rim: np.ndarray, size: int) -> tuple[Line, int]:
    """``line`` refitted to the rim pixels along it, moved out to the outermost of them (as a
    hull edge runs), and how many there are."""
    for band in _bands(size):  # a hull edge's direction is rough: refit to what it gathers
        points = rim[np.abs(_offsets(rim, line, normal)) < band]
        if len(points) < 3:
            return line, len(points)
        line = _fit_line(points)
        normal = _normal(line[1], normal)
    return (line[0] + _offsets(points, line, normal).max() * normal, line[1]), len(points)


def _upright(line: Line, side: int) -> bool:
    """Whether ``line`` may be the left (``side=-1``) or right (``+1``) edge of a fan."""
    return -MAX_EDGE_DEG <= -side * _angle(line[1]) <= MAX_INWARD_DEG


def _hull_edges_and_rim_lines(hull: np.ndarray, rim: np.ndarray):
    """(start, end, outward normal) of the hull's edges and, on large images, of the long
    straight runs of the rim (Hough): where clutter beside the fan (a gray bar, depth ticks,
    screen text) joins the echoes, the hull edge there is a chord, but the fan's edge is still
    a long straight stretch of the rim."""
    yield from zip(*_hull_edges(hull))
    size = max(hull.shape)
    if size <= _HOUGH_MIN_SIDE:  # short runs of a small image's speckle rim look straight too
        return
    canvas = np.zeros(hull.shape, np.uint8)
    canvas[rim[:, 1].astype(int), rim[:, 0].astype(int)] = 255
    segments = cv2.HoughLinesP(canvas, 1, math.pi / 720, threshold=max(20, int(0.08 * size)),
                               minLineLength=int(0.12 * size), maxLineGap=max(2, size // 200))
    if segments is None:
        return
    ys, xs = np.nonzero(hull)
    centre = np.array([xs.mean(), ys.mean()])
    for x0, y0, x1, y1 in segments.reshape(-1, 4).astype(float):
        start, end = np.array([x0, y0]), np.array([x1, y1])
        direction = (end - start) / np.linalg.norm(end - start)
        yield start, end, _normal(direction, (start + end) / 2 - centre)


def _side_edges(hull: np.ndarray, rim: np.ndarray, side: int) -> list[Line]:
    """Candidate lines of the left (``side=-1``) or right (``+1``) edge, best supported first.

    Every hull edge is a line with all echoes on one side; a fan edge is one along which the
    echoes end over a long stretch, so many rim pixels lie on it (a chord across dark fluid
    touches them only at its ends). Tangents of the bottom arc compete, hence several
    candidates: the pair that makes the best fan wins (:func:`estimate_geometry`).
    """
    found = []
    for start, end, normal in _hull_edges_and_rim_lines(hull, rim):
        line = _fit_line(np.stack([start, end]))
        if side * normal[0] <= 0 or not _upright(line, side):
            continue
        fit, support = _refit(line, normal, rim, max(hull.shape))
        if support >= 3 and _upright(fit, side) and not any(
                abs(_angle(fit[1]) - _angle(other[1])) < 0.5
                and abs(_offsets(fit[0][None], other, _normal(other[1], normal))[0]) < _INLIER_PX
                for _, other in found):
            found.append((support, fit))
    return [line for _, line in sorted(found, key=lambda item: -item[0])[:_CANDIDATES]]


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
    angles = _angle(left[1]), _angle(right[1])
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


def _rim(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the mask's pixels with a background neighbour (outside the image counts as
    background), and whether each lies on the image border."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    ys, xs = np.nonzero(mask & ~inner)
    height, width = mask.shape
    cut = (xs == 0) | (ys == 0) | (xs == width - 1) | (ys == height - 1)
    return np.stack([xs, ys], axis=1).astype(float), cut


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
    small = _gray(image)
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
    echoes, hull, bright = _detect(gray, threshold, min_texture)
    first = _best_fan(gray, echoes, hull, priors)
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
        second = _best_fan(gray, echoes, _checked_hull(gray, echoes, threshold), priors)
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
    inside = cv2.dilate(inside, _disk(mask.shape)[1])
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


def _best_fan(gray: np.ndarray, echoes: np.ndarray, hull: np.ndarray,
              priors: Priors = Priors()) -> tuple[geom.Geometry, float]:
    """The fan whose outline the rim of ``echoes`` (and of their ``hull``) follows best, and
    its confidence."""
    echo_rim, hull_rim = _rim(echoes), _rim(hull)
    edge_rim = echo_rim[0][~echo_rim[1]]  # the image border is no fan edge
    lefts, rights = _side_edges(hull, edge_rim, -1), _side_edges(hull, edge_rim, 1)
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
    confidence, best = max(((support * _iou(_hull_mask(geom.fan_mask(g, gray.shape)), hull), g)
                            for support, g in supported[:3]), key=lambda item: item[0])
    return best, float(confidence)
