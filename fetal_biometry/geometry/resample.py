"""Pixel spacing: a scan, its labels and its probe geometry resampled to another mm per pixel.

The patch classifier learns what anatomy looks like at one scale: a 48 px patch is 32 mm at
0.67 mm per pixel but 5 mm at HC18's finest 0.1 mm. So every scan is resampled to the model's
*target spacing* before patches are cut (:mod:`fetal_biometry.patches.records`) or the net is run
(:mod:`fetal_biometry.inference.dense`), and the class maps are brought back to the scan's own grid.

A resampling by ``scale`` (target pixels per source pixel, ``spacing_mm / target_mm``) maps
pixel centres as OpenCV's ``resize`` does with ``fx = fy = scale``::

    x' = scale * (x + 0.5) - 0.5        (the same for y)

so the probe geometry maps exactly (:func:`geometry`): positions by that formula, depths and
widths times ``scale``, angles unchanged, a clip rectangle by its outer edges. Images shrink by area averaging (no aliasing of
speckle) and grow bilinearly; label maps take the nearest label.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fetal_biometry.geometry import probe as geom


def scale_factor(spacing_mm: float, target_mm: float) -> float:
    """Target pixels per source pixel."""
    if not spacing_mm > 0 or not target_mm > 0:
        raise ValueError(f"pixel spacings must be positive, got {spacing_mm} and {target_mm}")
    return spacing_mm / target_mm


def shape(source: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of a ``source``-shaped image resampled by ``scale``, as ``cv2.resize`` rounds it."""
    return tuple(max(1, int(round(side * scale))) for side in source)


def _point(x: float, y: float, scale: float) -> tuple[float, float]:
    return scale * (x + 0.5) - 0.5, scale * (y + 0.5) - 0.5


def _clip(clip: tuple[float, float, float, float] | None, scale: float):
    """A clip rectangle of pixel centres (both ends included) on the resampled grid: its outer
    edges, half a pixel beyond the centres, map like any point."""
    if clip is None:
        return None
    x0, y0, x1, y1 = clip
    return (*_point(x0 - 0.5, y0 - 0.5, scale), *_point(x1 + 0.5, y1 + 0.5, scale))


def geometry(probe: geom.Geometry, scale: float) -> geom.Geometry:
    """The probe geometry on the resampled grid (its clip rectangle too)."""
    moved = dict(start_depth=probe.start_depth * scale, end_depth=probe.end_depth * scale,
                 clip=_clip(probe.clip, scale))
    if isinstance(probe, geom.ConvexProbe):
        return dataclasses.replace(probe, apex=_point(*probe.apex, scale), **moved)
    return dataclasses.replace(probe, origin=_point(*probe.origin, scale),
                               width=probe.width * scale, **moved)


def image(array: np.ndarray, scale: float) -> np.ndarray:
    """A gray (H, W) or planar image resampled by ``scale``: area average down, bilinear up."""
    if scale == 1:
        return array
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(array, None, fx=scale, fy=scale, interpolation=method)


def labels(array: np.ndarray, scale: float) -> np.ndarray:
    """A label map resampled by ``scale``, each pixel taking the nearest source label."""
    if scale == 1:
        return array
    return cv2.resize(array, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def back(maps: np.ndarray, source: tuple[int, int], scale: float, nearest: bool = False) -> np.ndarray:
    """Maps (K, h, w) or (h, w) on a grid resampled by ``scale`` brought back to ``source`` (H, W).

    Each source pixel samples the resampled grid where it lies (the inverse of the mapping in
    the module docstring), bilinearly or, for labels, nearest.
    """
    if scale == 1:
        return maps
    matrix = np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5]])
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    size = (source[1], source[0])

    def one(plane: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(plane, matrix, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)

    return one(maps) if maps.ndim == 2 else np.stack([one(m) for m in maps])
