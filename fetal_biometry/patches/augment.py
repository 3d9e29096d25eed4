"""Seeded augmentation of whole scans, for patch LMDBs (Caffe's Data layer only crops and mirrors).

A scan at the target spacing (gray image, dataset label map, beam-direction field, as
:func:`fetal_biometry.patches.records.at_spacing` gives them) is transformed as a whole, so that
every patch cut from it afterwards is consistent:

- **geometry** (:func:`warp`): a small rotation and a scale jitter about the fan's centroid.
  The image is resampled bilinearly, the label map takes the nearest label, and the direction
  field is resampled *and its vectors turned by the same angle*: a beam seen in a rotated image
  points rotated, and a shadow still runs along it. Pixels brought in from outside the fan (or
  from beyond the image) are :data:`~fetal_biometry.labels.OUTSIDE` in the labels and NaN in
  the directions, so they are never sampled and encode as outside.
- **intensity** (:func:`intensity`): speckle-like multiplicative noise, Gaussian blur, gain,
  contrast, gamma and additive (electronic) noise, roughly in the order a scanner's chain
  applies them (echo envelope, point-spread, then log compression and display mapping).

Rotation angles are in degrees from +x towards +y (clockwise on screen, y pointing down), the
convention of :class:`fetal_biometry.measure.ellipse.Ellipse`. All randomness comes from the generator
passed in: the same generator state gives the same arrays, byte for byte.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from fetal_biometry.labels import OUTSIDE

#: Gray levels per dB of gain: the display maps about 60 dB of echo dynamic range onto 0-255
#: (typical abdominal presets use 50-70 dB), so 1 dB is about 4 gray levels.
GRAY_PER_DB = 255 / 60

_POSITIVE = ("gamma", "contrast", "scale")  # factors: drawn log-uniformly
_SIGNED = ("gain_db", "rotation_deg")


@dataclasses.dataclass(frozen=True)
class Ranges:
    """The range each augmentation parameter is drawn from, ``(low, high)``.

    Multiplicative factors (gamma, contrast, scale) are drawn log-uniformly, so that a range
    like (0.8, 1.25) is as likely to halve as to double; the others uniformly. A range with
    ``low == high`` fixes the parameter ((0, 0) switches a noise or blur off).
    """

    #: Display gamma, ``255 (g / 255) ** gamma``: scanners' gray maps (post-processing curves)
    #: differ by about this much; below 1 lifts fluid and soft tissue, above 1 darkens them.
    gamma: tuple[float, float] = (0.7, 1.4)
    #: Contrast about the fan's mean gray: a dynamic range of 48-75 dB shown where 60 dB was.
    contrast: tuple[float, float] = (0.8, 1.25)
    #: Overall gain in dB (times :data:`GRAY_PER_DB`): operators set gain a few dB either way.
    gain_db: tuple[float, float] = (-4.0, 4.0)
    #: Gaussian blur, pixels at the target spacing (0.67 mm for the simulated scans): up to
    #: about 1 mm of extra point-spread, a lower frequency probe or a deeper focus.
    blur_sigma_px: tuple[float, float] = (0.0, 1.2)
    #: Standard deviation of multiplicative noise, ``g (1 + s n)``: speckle of another grain
    #: on top of the scan's own (blurred with it, so it is not white).
    speckle: tuple[float, float] = (0.0, 0.2)
    #: Standard deviation of additive noise in gray levels: electronic noise, seen in the
    #: dark fluid where the echoes are weak.
    noise_gray: tuple[float, float] = (0.0, 6.0)
    #: Scale factor: a pixel spacing misread by up to 10 %, and fetuses a little larger or
    #: smaller than the training ones at the same gestational age.
    scale: tuple[float, float] = (0.9, 1.1)
    #: Rotation of the whole scan (fan, anatomy and beams together), degrees: the anatomy meets
    #: the beams at other angles. Kept small because real fans are upright on screen.
    rotation_deg: tuple[float, float] = (-10.0, 10.0)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            low, high = getattr(self, field.name)
            if field.name in _POSITIVE:
                lowest, need = low > 0, "0 < low <= high"
            elif field.name in _SIGNED:
                lowest, need = True, "low <= high"
            else:
                lowest, need = low >= 0, "0 <= low <= high"
            if not (lowest and low <= high and math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"augmentation range {field.name}={(low, high)}: need {need}")
        if max(abs(v) for v in self.rotation_deg) > 45:
            raise ValueError(f"augmentation range rotation_deg={self.rotation_deg}: at most 45 "
                             "degrees either way (a fan turned further is no ultrasound scan)")


#: The ranges used when patch LMDBs are augmented.
RANGES = Ranges()


@dataclasses.dataclass(frozen=True)
class Transform:
    """One draw of the parameters; the defaults are the identity."""

    gamma: float = 1.0
    contrast: float = 1.0
    gain_db: float = 0.0
    blur_sigma_px: float = 0.0
    speckle: float = 0.0
    noise_gray: float = 0.0
    scale: float = 1.0
    rotation_deg: float = 0.0


def draw(rng: np.random.Generator, ranges: Ranges = RANGES) -> Transform:
    """A random :class:`Transform` within ``ranges`` (one uniform draw per parameter, in order)."""
    values = {}
    for field in dataclasses.fields(Ranges):
        low, high = getattr(ranges, field.name)
        if field.name in _POSITIVE:
            values[field.name] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        else:
            values[field.name] = float(rng.uniform(low, high))
    return Transform(**values)


def matrix(scale: float, rotation_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """The 2x3 forward affine map ``p' = centre + scale R (p - centre)`` of pixel (x, y) points.

    ``R`` turns by ``rotation_deg`` from +x towards +y.
    """
    turn = math.radians(rotation_deg)
    linear = scale * np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    centre = np.asarray(centre, float)
    return np.hstack([linear, (centre - linear @ centre)[:, None]])


def fan_centre(directions: np.ndarray) -> tuple[float, float]:
    """(x, y) centroid of the fan (the non-NaN directions); the image centre if there is none."""
    ys, xs = np.nonzero(~np.isnan(directions[..., 0]))
    if not len(xs):
        return (directions.shape[1] - 1) / 2, (directions.shape[0] - 1) / 2
    return float(xs.mean()), float(ys.mean())


def warp(image: np.ndarray, labels: np.ndarray, directions: np.ndarray, scale: float,
         rotation_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate and scale a scan about its fan's centroid, keeping the beam directions consistent.

    Parameters
    ----------
    image : (H, W) uint8
    labels : (H, W) uint8
        Dataset label map; resampled nearest-neighbour.
    directions : (H, W, 2) float32
        Unit beam vectors (dx, dy), NaN outside the fan.
    scale, rotation_deg : float
        See :func:`matrix`.

    Returns
    -------
    image, labels, directions
        Same shapes. Where the nearest source pixel lies outside the fan or the image, labels
        are OUTSIDE and directions NaN; elsewhere directions are the source's, bilinearly
        resampled, turned by ``rotation_deg`` and renormalised.
    """
    height, width = image.shape
    forward = matrix(scale, rotation_deg, fan_centre(directions))
    inverse = cv2.invertAffineTransform(forward)
    size = (width, height)

    def resample(array, method, border):
        return cv2.warpAffine(array, inverse, size, flags=method | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border)

    fan = resample((~np.isnan(directions[..., 0])).view(np.uint8), cv2.INTER_NEAREST, 0).view(bool)
    # Outside the fan the vectors read as 0: they add nothing to a direction, only to its length.
    vectors = resample(np.nan_to_num(directions, nan=0.0), cv2.INTER_LINEAR, 0)
    vectors = vectors @ (forward[:, :2] / scale).T.astype(np.float32)  # turned as the image is
    length = np.hypot(vectors[..., 0], vectors[..., 1])
    fan &= length > 0
    vectors /= np.where(fan, length, 1)[..., None]
    vectors[~fan] = np.nan
    out_labels = np.where(fan, resample(labels, cv2.INTER_NEAREST, OUTSIDE), OUTSIDE).astype(np.uint8)
    return resample(image, cv2.INTER_LINEAR, 0), out_labels, vectors


def scaled_geometry(probe, scale: float, centre: tuple[float, float]):
    """The probe geometry after :func:`warp` with ``scale`` and no rotation about ``centre``
    (:func:`fan_centre`): positions ``centre + scale (p - centre)``, depths and widths times
    ``scale``, angles unchanged. The segmenter's ``beam`` encoding needs it: its beam grid
    follows the probe, so a rotation of the whole scan leaves it unchanged (and is skipped there),
    while a scale changes what a beam sample holds."""
    from fetal_biometry.geometry import probe as geom

    def moved(x: float, y: float) -> tuple[float, float]:
        return centre[0] + scale * (x - centre[0]), centre[1] + scale * (y - centre[1])

    clip = None if probe.clip is None else (*moved(*probe.clip[:2]), *moved(*probe.clip[2:]))
    common = dict(start_depth=probe.start_depth * scale, end_depth=probe.end_depth * scale, clip=clip)
    if isinstance(probe, geom.ConvexProbe):
        return dataclasses.replace(probe, apex=moved(*probe.apex), **common)
    return dataclasses.replace(probe, origin=moved(*probe.origin), width=probe.width * scale, **common)


def intensity(image: np.ndarray, fan: np.ndarray, transform: Transform,
              rng: np.random.Generator) -> np.ndarray:
    """The gray image with the transform's noise, blur, gain, contrast and gamma: uint8.

    ``fan`` (H, W) bool marks the pixels inside the fan; contrast turns about their mean.
    Noise is drawn from ``rng`` only when its level is above zero.
    """
    gray = image.astype(np.float32)
    if transform.speckle > 0:
        gray *= 1 + transform.speckle * rng.standard_normal(gray.shape, dtype=np.float32)
    if transform.blur_sigma_px > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), transform.blur_sigma_px)
    gray += transform.gain_db * GRAY_PER_DB
    mean = float(gray[fan].mean()) if fan.any() else float(gray.mean())
    gray = mean + transform.contrast * (gray - mean)
    gray = 255 * (np.clip(gray, 0, 255) / 255) ** transform.gamma
    if transform.noise_gray > 0:
        gray += transform.noise_gray * rng.standard_normal(gray.shape, dtype=np.float32)
    return np.rint(np.clip(gray, 0, 255)).astype(np.uint8)


def apply(image: np.ndarray, labels: np.ndarray, directions: np.ndarray, transform: Transform,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`warp`, then :func:`intensity` inside the new fan: (image, labels, directions)."""
    image, labels, directions = warp(image, labels, directions, transform.scale, transform.rotation_deg)
    image = intensity(image, ~np.isnan(directions[..., 0]), transform, rng)
    return image, labels, directions
