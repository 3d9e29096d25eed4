"""Ultrasound physics on a beam grid: scatterers, specular echoes, attenuation, TGC, noise,
the pulse's point-spread function, envelope detection, acoustic shadow and log compression.

Functions take tissue-id maps on a beam grid (depth x beam) and return arrays; nothing here
knows about the fetus. The scanner, preset and operator of a case are a :class:`Settings`,
drawn from the ranges of :class:`~fetal_biometry.simulator.appearance.PhysicsRanges` by
:func:`draw_settings`; the default :class:`Settings` is the first round's physics.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from fetal_biometry.simulator.appearance import NARROW, PHYSICS_BOUNDS, PhysicsRanges
from fetal_biometry.simulator.tissues import (ABDOMEN_TISSUES, ATTENUATION, BONE, DENSITY, ECHO,
                                              IMPEDANCE, REVERBERANT)

# Physics constants (the randomised ones are ranges in appearance.PhysicsRanges).
SOUND_SPEED = 1.54  # mm / us: wavelength (mm) = SOUND_SPEED / frequency (MHz)
SAMPLES_PER_PIXEL = 2  # along depth
BEAM_PITCH_PX = 1.0  # distance between beams at the deepest row
MIN_SIGMA_SAMPLES = 0.6  # the PSF is band-limited to the beam grid (and, per case, to the display)
SPECULAR_GAIN = 20.0  # coherent interface echo per unit reflection coefficient, vs. liver speckle
SPECULAR_POWER = 6  # cos^p of the incidence angle: specular only where the beam meets it head-on
TGC_PERCENTILE = 75
TEXTURE_SIGMA = 0.3  # log-amplitude of the smooth echogenicity texture
TEXTURE_CELL = 16  # its correlation length, in beam-grid samples
SHADOW_LEVEL = 0.1  # intensity transmission below which a pixel is shadow (-10 dB)
TGC_SLIDERS = 8  # TGC error knots, evenly over the imaging depth, as a console's sliders
REVERB_SOURCE_MM = 25.0  # interfaces this close to the face reverberate (skin, fat, fascia)
REVERB_ORDERS = (2, 3, 4)  # multiples drawn: the k-th at k times its interface's depth
SIDE_LOBE_WIDTH = 6.0  # near side lobes spread haze over this many main-lobe widths
BONE_REVERB_MM = 1.6  # multiples inside a reverberant bone's tables repeat this far apart
BONE_REVERB_RATIO = 0.5  # each multiple this much of the one before
BONE_REVERB_ORDERS = (1, 2, 3, 4)
SOFT = (DENSITY >= 1) & ~BONE  # soft tissues: sub-resolution scatterers (fluid, vessels: sparse)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The physics of one case (one scanner, preset and operator), drawn by :func:`draw_settings`.

    Fields as in :class:`~fetal_biometry.simulator.appearance.PhysicsRanges`, drawn; ``density``
    is the scatterer density per tissue id and ``tgc_error_db`` the error at each of
    :data:`TGC_SLIDERS` depths (empty: none). The display (dynamic range, white level) is not
    here: :func:`draw_display` draws it from the case's own stream, as the first round did.
    """

    frequency_factor: float
    pulse_wavelengths: float
    axial_floor_px: float
    face_width_wavelengths: float
    aperture_mm: float
    density: tuple
    tgc_error_db: tuple
    noise_db: float
    reverberation: float
    clutter: float
    clutter_depth_mm: float
    side_lobe: float


def check_ranges(ranges: PhysicsRanges) -> None:
    """Raise ValueError unless every range is ``(low, high)`` with low <= high inside
    :data:`~fetal_biometry.simulator.appearance.PHYSICS_BOUNDS`."""
    for f in dataclasses.fields(ranges):
        low, high = getattr(ranges, f.name)
        least, most = PHYSICS_BOUNDS[f.name]
        if not least <= low <= high <= most:
            raise ValueError(f"physics range {f.name}={(low, high)} must satisfy "
                             f"{least} <= low <= high <= {most}")


def draw_settings(ranges: PhysicsRanges, rng: np.random.Generator) -> Settings:
    """One case's :class:`Settings` from ``ranges`` (uniform; scatterer density log-uniform).

    Draws a fixed count of numbers whatever the ranges, so a case's settings depend only on
    its stream and its ranges; the spread of the tissues added for head and femur planes is
    drawn last, so an abdomen's settings are what they were before those tissues existed.
    """
    check_ranges(ranges)
    u = {f.name: rng.uniform(*getattr(ranges, f.name)) for f in dataclasses.fields(ranges)
         if f.name not in ("scatterer_density", "dynamic_range_db", "white_level_db")}
    low, high = ranges.scatterer_density
    soft = math.exp(rng.uniform(math.log(low), math.log(high)))
    spread = rng.normal(0, 1, ABDOMEN_TISSUES)
    spread_sd = u.pop("density_spread")
    tgc = rng.normal(0, 1, TGC_SLIDERS) * u.pop("tgc_error_db")
    spread = np.exp(np.concatenate([spread, rng.normal(0, 1, len(DENSITY) - ABDOMEN_TISSUES)])
                    * spread_sd)
    density = np.where(SOFT, np.minimum(soft * spread, 1.0), DENSITY)
    return Settings(density=tuple(float(d) for d in density),
                    tgc_error_db=tuple(float(e) for e in tgc) if np.any(tgc) else (),
                    **{k: float(v) for k, v in u.items()})


FIRST_ROUND = draw_settings(NARROW.physics, np.random.default_rng(0))
"""The first round's physics (NARROW's ranges are single values: any stream gives these)."""


def _kernel(sigma: float, power: int = 1) -> np.ndarray:
    """Gaussian of unit energy (sum of squares 1) to ``power`` (2: an intensity kernel, sum 1)."""
    radius = max(1, math.ceil(3.5 * sigma))
    g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (g / np.sqrt(np.sum(g * g))) ** power


def _lateral_blur(field: np.ndarray, sigmas: np.ndarray, power: int = 1) -> np.ndarray:
    """Gaussian blur across beams whose width ``sigmas[row]`` (samples) changes with depth.

    Each row is a linear blend of the two nearest of a few fixed widths, 20 % apart.
    """
    lo = float(sigmas.min())
    hi = max(float(sigmas.max()), 1.01 * lo)
    levels = np.geomspace(lo, hi, max(2, math.ceil(math.log(hi / lo) / math.log(1.2)) + 1))
    position = np.interp(np.log(sigmas), np.log(levels), np.arange(len(levels)))
    lower = np.minimum(position.astype(np.intp), len(levels) - 2)
    upper_weight = (position - lower).astype(np.float32)
    out = np.zeros_like(field)
    for k, sigma in enumerate(levels):
        weight = np.where(lower == k, 1 - upper_weight, 0) + np.where(lower + 1 == k, upper_weight, 0)
        rows = np.nonzero(weight)[0]
        if rows.size:
            blurred = cv2.sepFilter2D(np.ascontiguousarray(field[rows]), -1,
                                      _kernel(sigma, power).astype(np.float32), np.ones(1, np.float32))
            out[rows] += blurred * weight[rows].reshape(-1, *[1] * (field.ndim - 1))
    return out


def _psf_sigmas(depth_mm: np.ndarray, pitch_mm: np.ndarray, frequency_mhz: float,
                settings: Settings = FIRST_ROUND) -> tuple[float, np.ndarray]:
    """Axial (one value) and lateral (per depth row) PSF widths, in beam-grid samples,
    at the transmitted frequency (``frequency_mhz`` already scaled by the settings)."""
    wavelength = SOUND_SPEED / frequency_mhz
    dz = depth_mm[1] - depth_mm[0]
    axial = max(settings.pulse_wavelengths * wavelength / dz, settings.axial_floor_px * SAMPLES_PER_PIXEL)
    width_mm = wavelength * (settings.face_width_wavelengths + depth_mm / settings.aperture_mm) / 2.355
    return axial, np.maximum(width_mm / pitch_mm, MIN_SIGMA_SAMPLES)  # (FWHM -> sigma)


def _two_way_loss_db(attenuation: np.ndarray, dz_mm: float, frequency_mhz: float) -> np.ndarray:
    """Amplitude loss (dB) of an echo from each sample, there and back along its beam."""
    step = 2 * attenuation * frequency_mhz * dz_mm / 10
    return np.cumsum(step, axis=0) - step / 2  # to the middle of the sample


def shadow_mask(tissue: np.ndarray, depth_mm: np.ndarray, pitch_mm: np.ndarray,
                frequency_mhz: float, settings: Settings = FIRST_ROUND) -> np.ndarray:
    """Acoustic shadow on a beam grid: where bone takes the intensity below :data:`SHADOW_LEVEL`.

    The two-way intensity transmission through bone along each beam is averaged over the
    beam's lateral width (a narrow bone shadows less than the beam sees) and thresholded.
    Bone itself is not shadow. ``frequency_mhz`` is the scene's; ``settings`` scale it and
    set the beam width.
    """
    frequency_mhz = frequency_mhz * settings.frequency_factor
    bone = BONE[tissue]
    loss = _two_way_loss_db(np.where(bone, ATTENUATION[tissue], 0),
                            depth_mm[1] - depth_mm[0], frequency_mhz)
    transmitted = (10 ** (-loss / 10)).astype(np.float32)
    seen = _lateral_blur(transmitted, _psf_sigmas(depth_mm, pitch_mm, frequency_mhz, settings)[1], power=2)
    return (seen < SHADOW_LEVEL) & ~bone


def _specular(impedance: np.ndarray, dz_mm: float, pitch_mm: np.ndarray) -> np.ndarray:
    """Reflection coefficient of interfaces per sample, weighted by how squarely the beam hits them."""
    z = cv2.GaussianBlur(impedance, (0, 0), 1.0)
    along = np.gradient(z, axis=0) / dz_mm
    across = np.gradient(z, axis=1) / pitch_mm[:, None]
    facing = along ** 2 / (along ** 2 + across ** 2 + 1e-12)  # cos^2 of the incidence angle
    return np.abs(along) * dz_mm / (2 * z) * facing ** (SPECULAR_POWER / 2)


def _tgc_db(soft_loss_db: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """Time-gain compensation: a smooth cubic through the loss of the more attenuating beams.

    As a sonographer sets it to show the fetus evenly: the 75th percentile across beams of
    the loss in soft tissue at each depth (beams through fluid come out brighter, "posterior
    enhancement"; no gain undoes a bone's shadow).
    """
    level = np.percentile(soft_loss_db, TGC_PERCENTILE, axis=1)
    t = depth_mm / depth_mm[-1]
    return np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyfit(t, level, 3))


def _tgc_error_db(knots_db: tuple, rows: int) -> np.ndarray:
    """The operator's TGC error per row: a smooth (cubic) curve through the slider errors,
    each slider at the middle of its band of the imaging depth, as on a console."""
    knots = np.asarray(knots_db, np.float32)[None, :]
    return cv2.resize(knots, (rows, 1), interpolation=cv2.INTER_CUBIC)[0]


def _reverberation(specular: np.ndarray, depth_mm: np.ndarray, ratio: float) -> np.ndarray:
    """Multiples of the near-field interfaces: the echo from depth d again at 2d, 3d, 4d, each
    ``ratio`` times the one before (probe face and interface bounce it back and forth)."""
    near = np.where((depth_mm < REVERB_SOURCE_MM)[:, None], specular, 0)
    rows = np.arange(len(depth_mm))
    out = np.zeros_like(specular)
    for k in REVERB_ORDERS:
        out += ratio ** (k - 1) * near[rows // k]
    return out


def _bone_reverberation(specular: np.ndarray, tissue: np.ndarray, dz_mm: float) -> np.ndarray:
    """Multiples of the echoes from reverberant bone (the skull): each repeats
    :data:`BONE_REVERB_MM` further along the beam, :data:`BONE_REVERB_RATIO` as strong as the
    one before, bouncing between the bone's tables; it hides the near side of the brain."""
    source = np.where(REVERBERANT[tissue], specular, 0)
    step = max(1, round(BONE_REVERB_MM / dz_mm))
    out = np.zeros_like(specular)
    for k in BONE_REVERB_ORDERS:
        out[k * step:] += BONE_REVERB_RATIO ** k * source[:-k * step]
    return out


def _haze(field: np.ndarray, depth_mm: np.ndarray, lateral: np.ndarray,
          settings: Settings) -> np.ndarray:
    """RMS amplitude of the incoherent clutter per sample: near-field haze fading with depth,
    and side-lobe haze, a fraction of the echo energy smeared across the beams: half from
    the near side lobes (a few beam widths), half from the far ones and aberration through
    the maternal wall (the mean over the row), so even a wide pool of fluid is not black."""
    near = settings.clutter * np.exp(-depth_mm / settings.clutter_depth_mm).astype(np.float32)
    power = np.broadcast_to((near ** 2)[:, None], field.shape[:2]).astype(np.float32)
    if settings.side_lobe > 0:
        energy = field[..., 0] ** 2 + field[..., 1] ** 2
        smeared = _lateral_blur(energy, SIDE_LOBE_WIDTH * lateral, power=2) + energy.mean(axis=1, keepdims=True)
        power = power + settings.side_lobe ** 2 / 2 * smeared
    return np.sqrt(power)


def beam_envelope(tissue: np.ndarray, depth_mm: np.ndarray, pitch_mm: np.ndarray,
                  frequency_mhz: float, rng: np.random.Generator,
                  texture: np.ndarray | None = None, settings: Settings = FIRST_ROUND) -> np.ndarray:
    """Echo envelope on a beam grid, after TGC and before log compression.

    Parameters
    ----------
    tissue : ndarray of int, shape (n_depth, n_beams)
        Tissue ids (indices into :data:`TISSUES`) at the beam-grid samples.
    depth_mm : ndarray, shape (n_depth,)
        Depth of each row below the probe face, uniformly spaced.
    pitch_mm : ndarray, shape (n_depth,)
        Distance between neighbouring beams at each row (grows with depth for convex probes).
    frequency_mhz : float
        The scene's transmit centre frequency (times ``settings.frequency_factor``): sets the
        PSF and the attenuation.
    rng : numpy.random.Generator
        The case's stream: scatterers and noise (a fixed count of draws whatever the settings).
    texture : ndarray, shape (n_depth, n_beams), optional
        Multiplies the echogenicity (smooth tissue texture); None for homogeneous tissue.
    settings : Settings
        The case's physics (:func:`draw_settings`); the default is the first round's.

    Returns
    -------
    ndarray of float32, shape (n_depth, n_beams)
        Linear envelope; liver speckle has an RMS of about 1.
    """
    dz = float(depth_mm[1] - depth_mm[0])
    frequency_mhz = frequency_mhz * settings.frequency_factor
    echo = ECHO[tissue] if texture is None else ECHO[tissue] * texture
    density = np.asarray(settings.density, np.float32)[tissue]
    hits = rng.random(tissue.shape, dtype=np.float32) < density
    scale = np.where(hits, echo / np.sqrt(2 * density), 0).astype(np.float32)
    field = rng.standard_normal((*tissue.shape, 2), dtype=np.float32) * scale[..., None]  # (I, Q)
    specular = _specular(IMPEDANCE[tissue], dz, pitch_mm)
    if settings.reverberation > 0:
        specular = specular + _reverberation(specular, depth_mm, settings.reverberation)
    if REVERBERANT[tissue].any():  # never in an abdomen: its scans stay as they were
        specular = specular + _bone_reverberation(specular, tissue, dz)
    field[..., 0] += SPECULAR_GAIN * specular
    attenuation = ATTENUATION[tissue]
    loss = _two_way_loss_db(attenuation, dz, frequency_mhz)
    field *= (10 ** (-loss / 20)).astype(np.float32)[..., None]
    soft_loss = _two_way_loss_db(np.where(BONE[tissue], 0, attenuation), dz, frequency_mhz)
    gain = _tgc_db(soft_loss, depth_mm)
    noise = 10 ** (-(gain[-1] + settings.noise_db) / 20)  # a fixed receiver noise, amplified by TGC with depth
    axial, lateral = _psf_sigmas(depth_mm, pitch_mm, frequency_mhz, settings)
    # Added before the PSF: as band-limited as the echoes (a unit-energy PSF keeps its level).
    # Clutter is incoherent like the noise: one complex Gaussian draw carries both.
    rms = np.float32(noise / math.sqrt(2))
    if settings.clutter > 0 or settings.side_lobe > 0:
        rms = np.sqrt(rms ** 2 + _haze(field, depth_mm, lateral, settings) ** 2 / 2)[..., None]
    field += rng.standard_normal(field.shape, dtype=np.float32) * rms
    field = cv2.sepFilter2D(field, -1, np.ones(1, np.float32), _kernel(axial).astype(np.float32))
    field = _lateral_blur(field, lateral)
    if settings.tgc_error_db:  # the operator's error applies to echoes and noise alike
        gain = gain + _tgc_error_db(settings.tgc_error_db, len(gain))
    return np.hypot(field[..., 0], field[..., 1]) * (10 ** (gain / 20)).astype(np.float32)[:, None]


def log_compress(envelope: np.ndarray, dynamic_range_db: float, top_db: float) -> np.ndarray:
    """Gray levels in [0, 255] (float32): ``top_db`` maps to 255, ``top_db - range`` to 0."""
    level = 20 * np.log10(np.maximum(envelope, 1e-12))
    return (np.clip((level - top_db) / dynamic_range_db + 1, 0, 1) * 255).astype(np.float32)


def texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    coarse = rng.normal(0, TEXTURE_SIGMA, [max(2, n // TEXTURE_CELL) for n in shape])
    return np.exp(cv2.resize(coarse.astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC))


def draw_display(rng: np.random.Generator,
                 ranges: PhysicsRanges = NARROW.physics) -> tuple[float, float]:
    """Display settings: dynamic range (dB) and the level (dB) shown white (liver: 0 dB).

    Drawn from the case's own stream, after its echoes, as in the first round (two draws
    whatever the ranges).
    """
    return rng.uniform(*ranges.dynamic_range_db), rng.uniform(*ranges.white_level_db)
