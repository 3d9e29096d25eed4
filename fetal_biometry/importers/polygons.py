"""Polygon geometry: self-crossing checks, shapes filled into label maps, and the pixel-edge
outline of a region."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy import ndimage

from fetal_biometry.importers.annotation import IMAGE_TOLERANCE_PX, Shape
from fetal_biometry.labels import BACKGROUND, FLUID
from fetal_biometry.measure import ellipse as ell


def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sign of the turn p -> q -> r for (N, 2) point arrays."""
    return np.sign((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))


def _proper_crossings(ring: np.ndarray) -> tuple[int, int] | None:
    """Indices of two edges of a closed polygon that cross each other, or None.

    Only proper crossings count: edges that touch at a vertex or overlap along a line (as the
    outlines of one-pixel-wide parts do) are not self-intersections. Pairs whose bounding
    boxes overlap are tested, a block of edges at a time (bounded memory for long outlines).
    """
    a, b = ring, np.roll(ring, -1, axis=0)
    low, high = np.minimum(a, b), np.maximum(a, b)
    n = len(ring)
    for start in range(0, n, 512):
        i = np.arange(start, min(start + 512, n))[:, None]
        j = np.arange(n)[None, :]
        near = ((low[i, 0] <= high[j, 0]) & (low[j, 0] <= high[i, 0])
                & (low[i, 1] <= high[j, 1]) & (low[j, 1] <= high[i, 1])
                & (j > i + 1) & ~((i == 0) & (j == n - 1)))  # neighbours share a vertex
        ii, jj = np.nonzero(near)
        ii += start
        cross = ((_orient(a[ii], b[ii], a[jj]) * _orient(a[ii], b[ii], b[jj]) < 0)
                 & (_orient(a[jj], b[jj], a[ii]) * _orient(a[jj], b[jj], b[ii]) < 0))
        if cross.any():
            k = int(np.argmax(cross))
            return int(ii[k]), int(jj[k])
    return None


def _shape_problems(shape: Shape, size: tuple[int, int]) -> list[str]:
    """Geometric problems of a shape on an image of ``size`` (width, height)."""
    width, height = size
    problems = []
    for ring in shape.rings:
        need = 2 if shape.kind == "polyline" else 3
        if len(ring) < need:
            problems.append(f"a {shape.kind} needs at least {need} points, has {len(ring)}")
            continue
        if shape.kind == "polygon" and (crossing := _proper_crossings(ring)) is not None:
            problems.append(f"self-intersecting polygon (edges {crossing[0]} and {crossing[1]} cross)")
        low, high = ring.min(axis=0), ring.max(axis=0)
        if (low < -IMAGE_TOLERANCE_PX).any() or high[0] > width - 1 + IMAGE_TOLERANCE_PX \
                or high[1] > height - 1 + IMAGE_TOLERANCE_PX:
            problems.append(f"reaches outside the {width}x{height} image (points from "
                            f"({low[0]:.1f}, {low[1]:.1f}) to ({high[0]:.1f}, {high[1]:.1f}))")
    if shape.ellipse is not None and not (0 <= shape.ellipse.cx <= width - 1
                                          and 0 <= shape.ellipse.cy <= height - 1):
        problems.append(f"ellipse centre ({shape.ellipse.cx:.1f}, {shape.ellipse.cy:.1f}) lies "
                        f"outside the {width}x{height} image")
    if shape.mask is not None and shape.mask.shape != (height, width):
        problems.append(f"mask is {shape.mask.shape[1]}x{shape.mask.shape[0]}, the image {width}x{height}")
    return problems


def fill_rings(rings: Iterable[np.ndarray], shape_hw: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside closed polygons (even-odd: a ring in a ring is a hole).

    A scanline fill: each edge toggles, on every pixel row it crosses (half-open in y), the
    pixels right of its crossing; the running parity along the row is the inside.
    """
    height, width = shape_hw
    toggles = np.zeros((height, width + 1), np.int32)
    for ring in rings:
        a, b = ring, np.roll(ring, -1, axis=0)
        first = np.clip(np.ceil(np.minimum(a[:, 1], b[:, 1])), 0, height).astype(int)
        stop = np.clip(np.ceil(np.maximum(a[:, 1], b[:, 1])), 0, height).astype(int)
        spans = np.maximum(stop - first, 0)
        edge = np.repeat(np.arange(len(ring)), spans)
        rows = first[edge] + np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
        t = (rows - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
        x = a[edge, 0] + t * (b[edge, 0] - a[edge, 0])
        np.add.at(toggles, (rows, np.clip(np.floor(x).astype(int) + 1, 0, width)), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def rasterize(shape: Shape, shape_hw: tuple[int, int]) -> np.ndarray:
    """The pixels a region shape covers: those whose centres lie inside it (bool (H, W))."""
    if shape.mask is not None:
        return shape.mask
    if shape.ellipse is not None:
        return ell.ellipse_mask(shape.ellipse, shape_hw)
    return fill_rings(shape.rings, shape_hw)


def edge_points(region: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Points (x, y) on the pixel edges of a region's outline (holes filled) along the skin.

    Only edges against background or amniotic fluid count: against shadow, the fan's edge or
    the image border the region's boundary is not the skin line, and against an organ or bone
    it is an inner boundary that shadow has opened to the outside.
    """
    filled = ndimage.binary_fill_holes(region)
    padded = np.pad(filled, 1)
    blocked = np.pad(~np.isin(labels, (BACKGROUND, FLUID)), 1, constant_values=True)
    points = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        neighbour = np.roll(padded, (-dy, -dx), axis=(0, 1))
        outside_blocked = np.roll(blocked, (-dy, -dx), axis=(0, 1))
        ys, xs = np.nonzero(padded & ~neighbour & ~outside_blocked)
        points.append(np.stack([xs - 1 + dx / 2, ys - 1 + dy / 2], axis=1))
    return np.concatenate(points).astype(float)
