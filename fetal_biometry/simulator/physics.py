"""Ultrasound physics on a beam grid: scatterers, specular echoes, attenuation, TGC, noise,
the pulse's point-spread function, envelope detection, acoustic shadow and log compression.

Functions take tissue-id maps on a beam grid (depth x beam) and return arrays; nothing here
knows about the fetus.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from fetal_biometry.simulator.tissues import ATTENUATION, BONE, DENSITY, ECHO, IMPEDANCE

# Physics and display constants.
SOUND_SPEED = 1.54  # mm / us: wavelength (mm) = SOUND_SPEED / frequency (MHz)
SAMPLES_PER_PIXEL = 2  # along depth
BEAM_PITCH_PX = 1.0  # distance between beams at the deepest row
AXIAL_SIGMA_WAVELENGTHS = 0.45  # Gaussian pulse envelope: FWHM ~ one wavelength (two cycles, two-way)
MIN_SIGMA_SAMPLES = 0.6  # the PSF is band-limited to the beam grid
MIN_AXIAL_SIGMA_PX = 0.75  # ... and the pulse to the display: speckle grains span pixels
LATERAL_F_NUMBER = 2.0  # beam width at the face, in wavelengths
APERTURE_MM = 25.0  # beyond the face the beam widens by wavelength * depth / aperture
SPECULAR_GAIN = 20.0  # coherent interface echo per unit reflection coefficient, vs. liver speckle
SPECULAR_POWER = 6  # cos^p of the incidence angle: specular only where the beam meets it head-on
TGC_PERCENTILE = 75
NOISE_DB = 25.0  # electronic noise below liver echoes at the deepest row, after TGC
TEXTURE_SIGMA = 0.3  # log-amplitude of the smooth echogenicity texture
TEXTURE_CELL = 16  # its correlation length, in beam-grid samples
SHADOW_LEVEL = 0.1  # intensity transmission below which a pixel is shadow (-10 dB)


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


def _psf_sigmas(depth_mm: np.ndarray, pitch_mm: np.ndarray,
                frequency_mhz: float) -> tuple[float, np.ndarray]:
    """Axial (one value) and lateral (per depth row) PSF widths, in beam-grid samples."""
    wavelength = SOUND_SPEED / frequency_mhz
    dz = depth_mm[1] - depth_mm[0]
    axial = max(AXIAL_SIGMA_WAVELENGTHS * wavelength / dz, MIN_AXIAL_SIGMA_PX * SAMPLES_PER_PIXEL)
    width_mm = wavelength * (LATERAL_F_NUMBER + depth_mm / APERTURE_MM) / 2.355  # FWHM -> sigma
    return axial, np.maximum(width_mm / pitch_mm, MIN_SIGMA_SAMPLES)


def _two_way_loss_db(attenuation: np.ndarray, dz_mm: float, frequency_mhz: float) -> np.ndarray:
    """Amplitude loss (dB) of an echo from each sample, there and back along its beam."""
    step = 2 * attenuation * frequency_mhz * dz_mm / 10
    return np.cumsum(step, axis=0) - step / 2  # to the middle of the sample


def shadow_mask(tissue: np.ndarray, depth_mm: np.ndarray, pitch_mm: np.ndarray,
                frequency_mhz: float) -> np.ndarray:
    """Acoustic shadow on a beam grid: where bone takes the intensity below :data:`SHADOW_LEVEL`.

    The two-way intensity transmission through bone along each beam is averaged over the
    beam's lateral width (a narrow bone shadows less than the beam sees) and thresholded.
    Bone itself is not shadow.
    """
    bone = BONE[tissue]
    loss = _two_way_loss_db(np.where(bone, ATTENUATION[tissue], 0),
                            depth_mm[1] - depth_mm[0], frequency_mhz)
    transmitted = (10 ** (-loss / 10)).astype(np.float32)
    seen = _lateral_blur(transmitted, _psf_sigmas(depth_mm, pitch_mm, frequency_mhz)[1], power=2)
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


def beam_envelope(tissue: np.ndarray, depth_mm: np.ndarray, pitch_mm: np.ndarray,
                  frequency_mhz: float, rng: np.random.Generator,
                  texture: np.ndarray | None = None) -> np.ndarray:
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
        Transmit centre frequency: sets the PSF and the attenuation.
    rng : numpy.random.Generator
    texture : ndarray, shape (n_depth, n_beams), optional
        Multiplies the echogenicity (smooth tissue texture); None for homogeneous tissue.

    Returns
    -------
    ndarray of float32, shape (n_depth, n_beams)
        Linear envelope; liver speckle has an RMS of about 1.
    """
    dz = float(depth_mm[1] - depth_mm[0])
    echo = ECHO[tissue] if texture is None else ECHO[tissue] * texture
    density = DENSITY[tissue]
    hits = rng.random(tissue.shape, dtype=np.float32) < density
    scale = np.where(hits, echo / np.sqrt(2 * density), 0).astype(np.float32)
    field = rng.standard_normal((*tissue.shape, 2), dtype=np.float32) * scale[..., None]  # (I, Q)
    field[..., 0] += SPECULAR_GAIN * _specular(IMPEDANCE[tissue], dz, pitch_mm)
    attenuation = ATTENUATION[tissue]
    loss = _two_way_loss_db(attenuation, dz, frequency_mhz)
    field *= (10 ** (-loss / 20)).astype(np.float32)[..., None]
    soft_loss = _two_way_loss_db(np.where(BONE[tissue], 0, attenuation), dz, frequency_mhz)
    gain = _tgc_db(soft_loss, depth_mm)
    noise = 10 ** (-(gain[-1] + NOISE_DB) / 20)  # a fixed receiver noise, amplified by TGC with depth
    # Added before the PSF: as band-limited as the echoes (a unit-energy PSF keeps its level).
    field += rng.standard_normal(field.shape, dtype=np.float32) * np.float32(noise / math.sqrt(2))
    axial, lateral = _psf_sigmas(depth_mm, pitch_mm, frequency_mhz)
    field = cv2.sepFilter2D(field, -1, np.ones(1, np.float32), _kernel(axial).astype(np.float32))
    field = _lateral_blur(field, lateral)
    return np.hypot(field[..., 0], field[..., 1]) * (10 ** (gain / 20)).astype(np.float32)[:, None]


def log_compress(envelope: np.ndarray, dynamic_range_db: float, top_db: float) -> np.ndarray:
    """Gray levels in [0, 255] (float32): ``top_db`` maps to 255, ``top_db - range`` to 0."""
    level = 20 * np.log10(np.maximum(envelope, 1e-12))
    return (np.clip((level - top_db) / dynamic_range_db + 1, 0, 1) * 255).astype(np.float32)


def texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    coarse = rng.normal(0, TEXTURE_SIGMA, [max(2, n // TEXTURE_CELL) for n in shape])
    return np.exp(cv2.resize(coarse.astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC))


def draw_display(rng: np.random.Generator) -> tuple[float, float]:
    """Display settings: dynamic range (dB) and the level (dB) shown white."""
    return rng.uniform(50, 60), rng.uniform(24, 30)  # liver mid-gray
