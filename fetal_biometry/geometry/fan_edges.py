"""Side edges of a fan: the straight stretches of the echo region's rim where the echoes end.

Part of :mod:`fetal_biometry.geometry.fan` (see there for the method): candidate lines from the
hull's edges and (on large images) the rim's long straight runs, refitted to the rim pixels along
them.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

MAX_EDGE_DEG = 80.0  # side edges are beams: never near horizontal ...
MAX_INWARD_DEG = 30.0  # ... nor leaning far towards the fan (bottom-arc tangents do)
_CANDIDATES = 8  # best supported lines tried per side
_HOUGH_MIN_SIDE = 256  # larger images also try the rim's long straight runs as side edges
INLIER_PX = 1.5
_WIDE_BAND = 0.004  # first refit band, share of the longer side (chosen on the real "choose" split)
_MIN_STEPS = 10  # points across an edge a refinement needs
_PAIRS = 300  # pairs of points tried for the line most of them lie on

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


def fit_line(points: np.ndarray) -> Line:
    """Total least squares line through ``points`` (x, y)."""
    centre = points.mean(axis=0)
    direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
    return centre, direction if direction[1] >= 0 else -direction


def angle(direction: np.ndarray) -> float:
    return math.degrees(math.atan2(direction[0], direction[1]))


def _offsets(points: np.ndarray, line: Line, normal: np.ndarray) -> np.ndarray:
    """Signed distances of ``points`` from ``line``, positive along ``normal``."""
    return (points - line[0]) @ normal


def normal_towards(direction: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Unit normal of ``direction`` on the side of ``towards``."""
    normal = np.array([direction[1], -direction[0]])
    return normal if normal @ towards >= 0 else -normal


def _bands(size: int) -> list[float]:
    """Inlier bands of the successive refits for an image whose longer side is ``size``.

    On large real screens a hull edge is often a chord (from the fan's corner to where the
    display cuts the fan, or to a gray bar beside it) a few degrees off the edge: the rim
    pixels along the edge lie up to several pixels inside it. Wide bands first, narrowing,
    walk the line onto them; at 256 px and below every band is :data:`INLIER_PX`, as the
    simulated validation scans (speckle, fluid against the edges) want it."""
    wide = _WIDE_BAND * size
    if wide <= INLIER_PX:
        return [INLIER_PX] * 3
    return [max(INLIER_PX, wide * f) for f in (1.0, 2 / 3, 1 / 2, 1 / 3)] + [INLIER_PX] * 2


def _refit(line: Line, normal: np.ndarray, rim: np.ndarray, size: int) -> tuple[Line, int]:
    """``line`` refitted to the rim pixels along it, moved out to the outermost of them (as a
    hull edge runs), and how many there are."""
    for band in _bands(size):  # a hull edge's direction is rough: refit to what it gathers
        points = rim[np.abs(_offsets(rim, line, normal)) < band]
        if len(points) < 3:
            return line, len(points)
        line = fit_line(points)
        normal = normal_towards(line[1], normal)
    return (line[0] + _offsets(points, line, normal).max() * normal, line[1]), len(points)


def _upright(line: Line, side: int) -> bool:
    """Whether ``line`` may be the left (``side=-1``) or right (``+1``) edge of a fan."""
    return -MAX_EDGE_DEG <= -side * angle(line[1]) <= MAX_INWARD_DEG


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
        yield start, end, normal_towards(direction, (start + end) / 2 - centre)


def side_edges(hull: np.ndarray, rim: np.ndarray, side: int) -> list[Line]:
    """Candidate lines of the left (``side=-1``) or right (``+1``) edge, best supported first.

    Every hull edge is a line with all echoes on one side; a fan edge is one along which the
    echoes end over a long stretch, so many rim pixels lie on it (a chord across dark fluid
    touches them only at its ends). Tangents of the bottom arc compete, hence several
    candidates: the pair that makes the best fan wins (:func:`estimate_geometry`).
    """
    found = []
    for start, end, normal in _hull_edges_and_rim_lines(hull, rim):
        line = fit_line(np.stack([start, end]))
        if side * normal[0] <= 0 or not _upright(line, side):
            continue
        fit, support = _refit(line, normal, rim, max(hull.shape))
        if support >= 3 and _upright(fit, side) and not any(
                abs(angle(fit[1]) - angle(other[1])) < 0.5
                and abs(_offsets(fit[0][None], other, normal_towards(other[1], normal))[0]) < INLIER_PX
                for _, other in found):
            found.append((support, fit))
    return [line for _, line in sorted(found, key=lambda item: -item[0])[:_CANDIDATES]]


def rim(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the mask's pixels with a background neighbour (outside the image counts as
    background), and whether each lies on the image border."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    ys, xs = np.nonzero(mask & ~inner)
    height, width = mask.shape
    cut = (xs == 0) | (ys == 0) | (xs == width - 1) | (ys == height - 1)
    return np.stack([xs, ys], axis=1).astype(float), cut


def refined(gray: np.ndarray, start: np.ndarray, end: np.ndarray, outward: np.ndarray,
            band: float, threshold: float) -> Line | None:
    """The side edge from ``start`` to ``end`` moved onto where the echoes end along it.

    Every 2 px along the edge, the lightly smoothed image is sampled across it (``band`` px
    either side, every half pixel) and, coming in from ``outward``, the first place where it
    rises above ``threshold`` is taken (interpolated between samples); a line is fitted to
    the points most of which it passes (:func:`_consensus_line`). Depth ticks, text or a drawn
    arc that join the fan move a few points outward, a shadow a stretch of them inward, not
    the line, whereas a hull edge or a refit moved out to the outermost rim pixel follows
    them. None where no line gathers enough points.
    """
    height, width = gray.shape
    length = float(np.linalg.norm(end - start))
    if length < 2 * _MIN_STEPS:
        return None
    along = (end - start) / length
    points = start + np.arange(0.0, length, 2.0)[:, None] * along  # (T, 2)
    s = np.arange(band, -band - 0.25, -0.5)  # from outside in
    xs = points[:, None, 0] + s[None, :] * outward[0]
    ys = points[:, None, 1] + s[None, :] * outward[1]
    inside = ((xs.min(axis=1) >= 0) & (xs.max(axis=1) <= width - 1)
              & (ys.min(axis=1) >= 0) & (ys.max(axis=1) <= height - 1))
    if inside.sum() < _MIN_STEPS:
        return None
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    profiles = cv2.remap(smooth, xs[inside].astype(np.float32), ys[inside].astype(np.float32),
                         cv2.INTER_LINEAR)
    above = profiles > threshold
    k = above.argmax(axis=1)  # first sample above, coming in
    seen = above.any(axis=1) & (k > 0)  # background outside, echoes inside
    rows = np.flatnonzero(seen)
    k = k[seen]
    before, after = profiles[rows, k - 1], profiles[rows, k]
    fraction = (threshold - before) / np.maximum(after - before, 1e-6)
    offset = s[k - 1] - 0.5 * fraction
    found = points[inside][seen] + offset[:, None] * outward
    if len(found) < _MIN_STEPS:
        return None
    return _consensus_line(found, length)


def _consensus_line(points: np.ndarray, length: float) -> Line | None:
    """The line most of ``points`` lie on (within :data:`INLIER_PX`), refitted to them: pairs
    of points at least a quarter of the edge apart are tried (a fixed seed: the same answer
    every run) and the line through the pair with the most points near it wins. Points off
    the edge (where the echoes end early in a shadow, or late at a tick or text) scatter, the
    edge's own points line up. None where fewer than :data:`_MIN_STEPS` points, or a quarter
    of them, agree."""
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(points), (_PAIRS, 2))
    first, second = points[pairs[:, 0]], points[pairs[:, 1]]
    span = np.linalg.norm(second - first, axis=1)
    usable = span >= 0.25 * length
    if not usable.any():
        return None
    first, direction = first[usable], (second - first)[usable] / span[usable, None]
    normals = np.stack([direction[:, 1], -direction[:, 0]], axis=1)
    offsets = np.sum(normals * first, axis=1)[:, None]
    residual = np.abs(np.einsum("pk,nk->pn", normals, points) - offsets)  # (pairs, points)
    inliers = residual[np.argmax((residual <= INLIER_PX).sum(axis=1))] <= INLIER_PX
    if inliers.sum() < max(_MIN_STEPS, 0.25 * len(points)):
        return None
    line = fit_line(points[inliers])
    for _ in range(2):  # the refitted line gathers its points again
        normal = np.array([line[1][1], -line[1][0]])
        near = np.abs((points - line[0]) @ normal) <= INLIER_PX
        if near.sum() < _MIN_STEPS:
            break
        line = fit_line(points[near])
    return line
