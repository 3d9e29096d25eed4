"""Patches around annotated pixels, carrying the beam direction.

The source's proposal: an expert reads an ultrasound patch differently depending on where the
beam comes from, so the network gets the propagation direction together with the patch. Three
encodings, selectable everywhere (LMDB writing, training, dense inference):

``rotate``
    the patch is sampled rotated so that the beam runs from top to bottom; 1 channel.
``channels``
    the patch plus two channels holding the beam direction (dx, dy) at each pixel; 3 channels.
``none``
    the image patch alone: the ablation that shows what the direction is worth; 1 channel.

All channels are uint8, so that records stay compact and Caffe's ``scale: 1/256`` applies to all
of them: gray levels as they are, and a direction component ``d`` in [-1, 1] as
``round(128 + 127 d)``. Pixels outside the fan read as gray 0 with direction (0, 0).
"""
from __future__ import annotations

import cv2
import numpy as np

ENCODINGS = ("rotate", "channels", "none")
#: The patch classifier's input normalisation: uint8 planes times 1/256, no mean subtracted
#: (the planes are speckle gray levels and direction codes around 128; Adam needs no centring,
#: and a mean would have to be carried, identically, into the fully convolutional net).
INPUT_SCALE = 1 / 256

#: Patch side in pixels, chosen on the validation split (simulator seed 2, never the held-out
#: set) by ``python tools/experiments.py patch-size --sizes 40 48 --seeds 0 1 2`` (channels
#: encoding, 100 widened-simulator scans, 1500 Adam iterations, three seeds): mean per-class
#: accuracy 0.817 at 48 px, 0.811 at 40 px (the rule: the highest, sizes within 0.005 tied;
#: one seed at 32 px gave 0.788). At ~0.66 mm per pixel a 48 px patch sees ~32 mm: a shadow or a
#: stomach bubble needs the context. Training costs about 1.4x the time of 40 px.
SIZE = 48
_BLOCK_ROWS = 256


def channels(encoding: str) -> int:
    """Number of input channels an encoding gives the net."""
    _check(encoding)
    return 3 if encoding == "channels" else 1


def _check(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown beam encoding {encoding!r}; choose one of {ENCODINGS}")


def encode(image: np.ndarray, directions: np.ndarray, encoding: str) -> np.ndarray:
    """The (C, H, W) uint8 input planes of a whole scan for an encoding.

    ``rotate`` and ``none`` give the gray image; ``channels`` adds the direction planes.
    ``directions`` is (H, W, 2) with NaN outside the fan.
    """
    _check(encoding)
    planes = np.zeros((channels(encoding), *image.shape), np.uint8)
    # Block by block, so that the float temporaries stay small whatever the scan's size.
    for top in range(0, image.shape[0], _BLOCK_ROWS):
        rows = slice(top, top + _BLOCK_ROWS)
        d = directions[rows]
        planes[0, rows] = np.where(np.isnan(d[..., 0]), 0, image[rows])
        if encoding == "channels":
            d = np.nan_to_num(d, nan=0.0)
            planes[1:, rows] = np.rint(128 + 127 * np.clip(d, -1, 1)).astype(np.uint8).transpose(2, 0, 1)
    return planes


def sample_centers(classes: np.ndarray, per_class: dict[int, int], rng: np.random.Generator,
                   margin: int = 0) -> list[tuple[int, int, int]]:
    """Pick up to ``per_class[c]`` pixel centres ``(y, x, c)`` of each class, without replacement.

    Pixels closer than ``margin`` to the image border are skipped. Classes with fewer pixels
    than asked give all they have.
    """
    height, width = classes.shape
    picks = []
    for cls, count in sorted(per_class.items()):
        # Flat indices (row-major, as np.nonzero orders them): one array, not two, per class.
        flat = np.flatnonzero(classes == cls)
        if margin:
            ys, xs = np.divmod(flat, width)
            flat = flat[(ys >= margin) & (ys < height - margin) & (xs >= margin) & (xs < width - margin)]
        chosen = rng.choice(len(flat), size=min(count, len(flat)), replace=False)
        picks.extend((*map(int, divmod(int(flat[i]), width)), cls) for i in np.sort(chosen))
    return picks


def extract(planes: np.ndarray, directions: np.ndarray, centers, size: int,
            encoding: str) -> np.ndarray:
    """Patches of ``size`` x ``size`` centred on ``centers`` ((y, x, ...) tuples): (N, C, s, s) uint8.

    A patch centred on pixel (y, x) covers rows ``y - size//2 .. y + size//2 - 1`` (and the same
    for columns), zero-padded beyond the image. For ``rotate`` the patch is resampled (bilinear)
    in a frame turned so that the beam direction at the centre points down the patch.
    """
    _check(encoding)
    half = size // 2
    if encoding != "rotate":
        # Each patch copied from its window, zeros beyond the image (no padded copy of the scan).
        out = np.zeros((len(centers), planes.shape[0], size, size), np.uint8)
        height, width = planes.shape[1:]
        for index, (y, x, *_) in enumerate(centers):
            y0, x0 = y - half, x - half
            top, left = max(0, -y0), max(0, -x0)
            bottom, right = min(size, height - y0), min(size, width - x0)
            out[index, :, top:bottom, left:right] = planes[:, y0 + top:y0 + bottom, x0 + left:x0 + right]
        return out
    gray = planes[0]
    out = np.zeros((len(centers), 1, size, size), np.uint8)
    for index, (y, x, *_) in enumerate(centers):
        out[index, 0] = _rotated_patch(gray, directions[y, x], y, x, size)
    return out


def _rotated_patch(gray: np.ndarray, direction: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """Sample a patch whose +row axis follows the beam ``direction`` (dx, dy) at (y, x)."""
    dx, dy = np.nan_to_num(direction, nan=0.0)
    if dx == 0 and dy == 0:
        dx, dy = 0.0, 1.0
    # Patch axes in image coordinates: down the patch = beam (dx, dy); across = (dy, -dx)
    # rotated so that a vertical beam (0, 1) gives the identity.
    half = size // 2  # patch index (half, half) is pixel (y, x), as in the unrotated patches
    down = np.array([dx, dy])
    across = np.array([dy, -dx])
    # x_img = x + (u - half) * across_x + (v - half) * down_x, u column, v row of the patch.
    matrix = np.array([[across[0], down[0], x - half * (across[0] + down[0])],
                       [across[1], down[1], y - half * (across[1] + down[1])]])
    return cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
