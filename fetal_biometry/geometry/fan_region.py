"""The imaged fan as a region: echoes (speckle) on a dark background.

Part of :mod:`fetal_biometry.geometry.fan` (see there for the method): :func:`detect_fan` finds
the textured echo region, the convex hull that bridges dark fluid inside it, and checks that a
dark background lies around it.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

MAX_CHROMA = 40  # channel spread above which an RGB pixel is a coloured overlay
MIN_FILL = 0.5  # share of echo pixels a region needs: speckle fills it, text strokes do not
FLAT_RANGE = 1  # gray levels within which a 5 x 5 window is flat: a panel, not speckle
_FLAT_WINDOWS = ((5, 5), (1, 7), (7, 1))  # a panel; a gray bar's rows or a column
SATURATED = 250  # flat areas this bright are saturated echoes, not a panel
# Chosen by benchmarks/fan_validation.py --real --choose (see fan.MIN_CONFIDENCE).
MIN_TEXTURE = 6.0  # median local standard deviation a region needs to count as speckle


class FanNotFound(ValueError):
    """The image shows no fan: no textured region on a dark background with straight sides.

    ``confidence`` is the best outline's confidence where one was found but fell below the
    threshold, else None."""

    def __init__(self, message: str, confidence: float | None = None):
        super().__init__(message)
        self.confidence = confidence



def gray_of(image: np.ndarray) -> np.ndarray:
    """8-bit gray in which what cannot be an echo is background (0): in an RGB image, coloured
    pixels (overlays: calipers, measurement text, colour bars), for B-mode echoes are gray;
    and flat areas, for echoes are speckle: a viewer's or scanner's gray panel around the
    scan (a uniform 5 x 5 window) and a gray bar (uniform along a row or column of 7 pixels),
    uniform meaning within :data:`FLAT_RANGE` gray levels; saturated echoes (from
    :data:`SATURATED` up) stay."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit gray or RGB image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        gray = image.copy()
    else:
        rgb = image[..., :3]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        gray[rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2) > MAX_CHROMA] = 0
    flat = np.zeros(gray.shape, np.uint8)
    for window in (np.ones(shape, np.uint8) for shape in _FLAT_WINDOWS):
        uniform = cv2.dilate(gray, window).astype(np.int16) - cv2.erode(gray, window) <= FLAT_RANGE
        flat |= cv2.dilate(uniform.astype(np.uint8), window)  # every pixel of a uniform window
    gray[flat.astype(bool) & (gray < SATURATED)] = 0  # a saturated echo is white, a panel gray
    return gray


def _local_std(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0))


def disk(shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """The closing's radius and disk: they scale with the image (4 px at 256)."""
    radius = max(3, round(max(shape) / 64))
    return radius, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _echo_region(gray: np.ndarray, threshold: int, min_texture: float) -> tuple[np.ndarray, np.ndarray]:
    """Echo pixels (bool), clutter removed, before the hull; and all bright pixels, closed
    over speckle gaps, clutter kept."""
    radius, kernel = disk(gray.shape)
    # Black padding: morphology then treats the image's outside as background, so a fan
    # cut by the border is not eroded there and a black frame is not closed over.
    pad = 2 * radius + 3
    bright = np.pad(gray > threshold, pad).astype(np.uint8)
    closed = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, kernel)  # gaps between sparse speckle
    core = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)  # thin strokes: text, lines, marks
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
    _, joined = cv2.connectedComponents(cv2.dilate(closed, kernel), connectivity=8)
    keep = large & np.isin(ndimage.maximum(joined, labels, np.arange(count)),
                           joined[filled[labels]])
    # Opening rounds the fan's corners; grow the kept core back over the closed pixels.
    near = cv2.dilate(keep[labels].astype(np.uint8), kernel)
    return (closed & near).astype(bool)[pad:-pad, pad:-pad], closed.astype(bool)[pad:-pad, pad:-pad]


def hull_mask(mask: np.ndarray) -> np.ndarray:
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
    return detect(gray_of(image), threshold, min_texture)[1]


def detect(gray: np.ndarray, threshold: int,
            min_texture: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The echo region, its convex hull (see :func:`detect_fan`) and all bright pixels
    (:func:`_echo_region`)."""
    echoes, bright = _echo_region(gray, threshold, min_texture)
    if not echoes.any():
        raise FanNotFound("no textured region: the image is blank, uniform, has no speckle "
                          "or only text")
    return echoes, checked_hull(gray, echoes, threshold), bright


def checked_hull(gray: np.ndarray, echoes: np.ndarray, threshold: int) -> np.ndarray:
    hull = hull_mask(echoes)
    outside = gray[~hull]
    if outside.size < 0.01 * gray.size or np.mean(outside <= threshold) < 0.8:
        raise FanNotFound("the textured region has no dark background around it: not a fan")
    return hull
