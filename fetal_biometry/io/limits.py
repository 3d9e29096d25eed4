"""Budgets: the largest inputs the readers take, checked on declared sizes before any pixel is
allocated or decoded (a file of a kilobyte may declare gigabytes).

Every reader (images, DICOM, image stacks) calls :func:`check_frames` with the sizes its
header declares and :func:`check_bytes` with the bytes the file holds; the tools' ``--help``
quotes :data:`HELP`.
"""
from __future__ import annotations

import math
import textwrap

MAX_FRAME_PIXELS = 4096 * 4096  # one image, or one frame of a loop: rows x columns
MAX_FRAMES = 100_000  # frames of one cine loop or stack
MAX_RATIO = 1100  # declared bytes per byte of compressed data at most (zlib's best is ~1:1032)
#: Pixel spacings an ultrasound scan can have (mm per pixel): outside, a number is a typo or a
#: unit mix-up (metres, micrometres), and would give absurd sizes and ACs.
SPACING_MM = (0.005, 5.0)
HELP = textwrap.fill(f"Limits: an image or frame up to {MAX_FRAME_PIXELS / 1e6:.1f} megapixels (4096 x 4096), "
        f"a cine loop or stack up to {MAX_FRAMES:,} frames; the sizes a file declares must fit "
        f"the bytes it holds; pixel spacings from {SPACING_MM[0]} to {SPACING_MM[1]:g} mm.", 88)


class BudgetError(ValueError):
    """Declared sizes over a budget, or more than the file can hold; the caller names the file."""


def check_frames(columns: int, rows: int, frames: int = 1) -> None:
    """Refuse frames of more than :data:`MAX_FRAME_PIXELS` pixels, or more than :data:`MAX_FRAMES`."""
    if columns * rows > MAX_FRAME_PIXELS:
        raise BudgetError(f"{columns}x{rows} pixels, over the limit of "
                          f"{MAX_FRAME_PIXELS / 1e6:.1f} megapixels per image or frame")
    if frames > MAX_FRAMES:
        raise BudgetError(f"{frames:,} frames, over the limit of {MAX_FRAMES:,}")


def check_spacing(value: float) -> None:
    """Refuse a spacing that is no pixel spacing of an ultrasound scan (:data:`SPACING_MM`)."""
    low, high = SPACING_MM
    if not (math.isfinite(value) and low <= value <= high):
        raise BudgetError(f"a pixel spacing is a number of mm from {low} to {high:g} (an "
                          f"ultrasound scan's), got {value:g}")


def check_bytes(declared: int, present: int, compressed: bool) -> None:
    """Refuse ``declared`` bytes of pixels where the file holds only ``present`` (all of them
    for raw data, at least 1/:data:`MAX_RATIO` of them for compressed data)."""
    needed = math.ceil(declared / MAX_RATIO) if compressed else declared
    if present < needed:
        raise BudgetError(f"declares {declared:,} bytes of pixels but holds {max(present, 0):,} "
                          f"bytes{' of compressed data' if compressed else ''} (truncated, or forged)")
