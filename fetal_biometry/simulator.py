"""B-mode ultrasound simulator of fetal abdominal cross-sections, with exact ground truth.

One case is made in three steps.

1. **Anatomy** (:func:`draw_scene`). Gestational age 20-40 weeks gives the abdominal
   circumference (Hadlock et al. 1984 mean, 5 % spread, kept within 150-380 mm), which gives a
   nearly round ellipse: the skin line. Inside it, in a fetal frame (``u`` towards the fetal
   left, ``v`` anterior, mm): abdominal wall, liver, stomach bubble (left), the curved
   intrahepatic umbilical vein (a "J" towards the right), aorta, the vertebra's three
   ossification centres (posterior) and ribs (lateral). Around it: amniotic fluid, then the
   layers parallel to the probe face, undulating across the fan: maternal skin, fat, fascia,
   muscle, uterine wall and, in some cases, the placenta; beyond the fetus the posterior
   uterine wall and maternal viscera. The fetus is rotated, mirrored, and placed at random
   depth and beam angle, always inside the fan. A share of planes (default 30 %) is not
   acceptable for AC: stomach missing, umbilical vein missing, or the wrong (renal) level.
   The imaging depth is set as a sonographer would, to fit the fetus, so the pixel spacing
   follows the size (0.44-0.91 mm per pixel for 256 x 256 images, median 0.67) and the
   transmit frequency falls with depth (about 4.7 to 2.6 MHz).
2. **Physics** (:func:`beam_envelope`), on a beam grid (depth x beam, two samples per pixel
   along depth, about one pixel between beams at the deepest row). Each sample holds a
   scatterer with the tissue's density as probability and complex Gaussian amplitude scaled
   by its echogenicity (times a smooth random texture); interfaces add a coherent specular
   echo that is strongest where the beam meets them head-on; echoes are attenuated by the
   two-way loss accumulated along the beam (bone: strong, fluid: almost none); receiver
   noise is added, and everything is convolved with the pulse point-spread function
   (Gaussian axial pulse, lateral beam width growing with depth). The envelope is the
   magnitude of this complex (IQ) field, times a time-gain compensation (a smooth depth
   curve through the soft-tissue loss of the more attenuating beams). Speckle of homogeneous
   tissue is a linear filter of complex Gaussian scatterers, hence Rayleigh (mean/std 1.91).
3. **Display and truth**: log compression to 8-bit gray in beam coordinates, then scan
   conversion into the fan. Labels come from the same anatomy, evaluated on the pixel grid;
   *shadow* marks the pixels whose two-way intensity transmission through bone, seen through
   the beam's lateral width, has fallen below a tenth (-10 dB) (:func:`shadow_mask`).

Every case draws its random numbers from ``numpy.random.default_rng([seed, index])``: a
dataset is byte-for-byte reproducible, and case ``i`` does not depend on how many are made.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import cv2
import numpy as np

from fetal_biometry import __version__, dataset, geometry as geom
from fetal_biometry.ellipse import Ellipse, ellipse_perimeter
from fetal_biometry.labels import (ABDOMEN, BACKGROUND, FLUID, OUTSIDE, RIB, SHADOW, SPINE, STOMACH,
                                   VEIN)

PROBES = ("convex", "linear", "mixed")
CONVEX_SHARE_MIXED = 2 / 3  # fetal abdomens are scanned with convex probes; some linear ones
AC_RANGE_MM = (150.0, 380.0)
AC_SPREAD = 0.05  # relative standard deviation of AC at a given age

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
VISIBLE_SHARE = 0.5  # an acceptable plane must show half of its stomach and vein
MAX_ATTEMPTS = 8  # scenes drawn before an acceptable plane hidden in shadow is let through
MIN_LAYER_MM = 0.5


@dataclasses.dataclass(frozen=True)
class Tissue:
    """Acoustic properties of one tissue and the dataset class it belongs to."""

    name: str
    label: int
    echo: float  # scattering amplitude relative to liver
    density: float  # probability that a beam-grid sample holds a scatterer; 1: fully developed speckle
    attenuation: float  # dB / cm / MHz, one way
    impedance: float  # MRayl


TISSUES = (
    Tissue("maternal_skin", BACKGROUND, 1.3, 1.0, 0.6, 1.66),
    Tissue("fat", BACKGROUND, 0.3, 1.0, 0.5, 1.38),
    Tissue("fascia", BACKGROUND, 2.5, 1.0, 0.7, 1.70),
    Tissue("muscle", BACKGROUND, 0.8, 1.0, 0.9, 1.65),
    Tissue("myometrium", BACKGROUND, 0.6, 1.0, 0.7, 1.64),
    Tissue("placenta", BACKGROUND, 1.1, 1.0, 0.6, 1.62),
    Tissue("maternal_viscera", BACKGROUND, 0.6, 1.0, 0.7, 1.63),
    Tissue("amniotic_fluid", FLUID, 0.012, 0.0006, 0.005, 1.52),  # sparse floating particles
    # Fetal soft tissue holds more water than adult tissue: it attenuates less.
    Tissue("body_wall", ABDOMEN, 1.3, 1.0, 0.35, 1.68),
    Tissue("liver", ABDOMEN, 1.0, 1.0, 0.35, 1.64),
    Tissue("kidney", ABDOMEN, 0.35, 1.0, 0.35, 1.62),
    Tissue("renal_sinus", ABDOMEN, 2.0, 1.0, 0.35, 1.66),
    Tissue("vessel", ABDOMEN, 0.03, 0.003, 0.15, 1.60),  # aorta, hepatic veins
    Tissue("stomach", STOMACH, 0.03, 0.003, 0.005, 1.52),
    Tissue("umbilical_vein", VEIN, 0.03, 0.003, 0.15, 1.60),
    # Bone: 20 dB/cm/MHz lumps absorption and the reflection losses at its surfaces.
    Tissue("spine", SPINE, 15.0, 1.0, 20.0, 5.0),
    Tissue("rib", RIB, 15.0, 1.0, 20.0, 5.0),
    # Thorax, for sweeps (fetal_biometry.sweep_simulator): fluid-filled fetal lungs are
    # brighter than liver; the heart is muscle around blood (chambers are "vessel").
    Tissue("lung", ABDOMEN, 1.5, 1.0, 0.4, 1.65),
    Tissue("heart", ABDOMEN, 0.9, 1.0, 0.35, 1.66),
)
TISSUE = {t.name: i for i, t in enumerate(TISSUES)}  # name -> tissue id
_LABEL = np.array([t.label for t in TISSUES], np.uint8)
_ECHO = np.array([t.echo for t in TISSUES], np.float32)
_DENSITY = np.array([t.density for t in TISSUES], np.float32)
_ATTENUATION = np.array([t.attenuation for t in TISSUES], np.float32)
_IMPEDANCE = np.array([t.impedance for t in TISSUES], np.float32)
_BONE = np.isin(_LABEL, (SPINE, RIB))

ACCEPTABLE = "stomach bubble and umbilical vein in plane"
NO_STOMACH = "stomach bubble not in plane"
NO_VEIN = "umbilical vein not in plane"
RENAL_LEVEL = "wrong level: kidneys in plane, no stomach bubble or umbilical vein"
UNACCEPTABLE = (NO_STOMACH, NO_VEIN, RENAL_LEVEL)


# --------------------------------------------------------------------------- shapes (fetal frame, mm)

@dataclasses.dataclass(frozen=True)
class _Blob:
    """Ellipse centred at (u, v) with semi-axes (ru, rv), the first at ``angle`` degrees from +u."""

    u: float
    v: float
    ru: float
    rv: float
    angle: float = 0.0

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        du, dv = u - self.u, v - self.v
        return ((du * c + dv * s) / self.ru) ** 2 + ((dv * c - du * s) / self.rv) ** 2 <= 1


@dataclasses.dataclass(frozen=True)
class _Tube:
    """Points within ``radius`` of a polyline ``points`` ((u, v), ...)."""

    points: tuple[tuple[float, float], ...]
    radius: float

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = np.array(self.points)
        (u0, v0), (u1, v1) = p.min(axis=0) - self.radius, p.max(axis=0) + self.radius
        near = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)  # only these need distances
        nu, nv = u[near], v[near]
        nearest = np.full(nu.shape, np.inf)
        for (au, av), (bu, bv) in zip(p[:-1], p[1:]):
            du, dv = bu - au, bv - av
            t = np.clip(((nu - au) * du + (nv - av) * dv) / (du * du + dv * dv), 0, 1)
            nearest = np.minimum(nearest, (nu - au - t * du) ** 2 + (nv - av - t * dv) ** 2)
        inside = np.zeros(u.shape, bool)
        inside[near] = nearest <= self.radius ** 2
        return inside


@dataclasses.dataclass(frozen=True)
class _Band:
    """Part of a ring concentric with the abdomen ellipse (semi-axes a, b).

    Normalised radius ``rho0..rho1``; polar angle (in normalised coordinates, degrees from +u
    towards +v) within ``half_width`` of ``psi``.
    """

    a: float
    b: float
    rho0: float
    rho1: float
    psi: float = 0.0
    half_width: float = 180.0

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rho = np.hypot(u / self.a, v / self.b)
        offset = (np.degrees(np.arctan2(v / self.b, u / self.a)) - self.psi + 180) % 360 - 180
        return (rho >= self.rho0) & (rho <= self.rho1) & (np.abs(offset) <= self.half_width)


@dataclasses.dataclass(frozen=True)
class _Boundary:
    """Depth below the probe face (mm) where the next layer starts, across the fan (0..1)."""

    depth: float
    tilt: float = 0.0
    amplitude: float = 0.0
    cycles: float = 1.0
    phase: float = 0.0

    def at(self, lateral: np.ndarray) -> np.ndarray:
        return (self.depth + self.tilt * (lateral - 0.5)
                + self.amplitude * np.sin(2 * np.pi * self.cycles * lateral + self.phase))

    @property
    def deepest(self) -> float:
        return self.depth + abs(self.tilt) / 2 + self.amplitude



@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """Everything random about one case: probe, anatomy, plane; no pixels yet.

    ``center`` is the abdomen centre in pixels; anatomy is in mm in the fetal frame (``u``
    towards the fetal left, ``v`` anterior), whose ``u`` axis points at ``angle`` degrees
    from +x towards +y, or opposite when ``mirrored``.
    """

    geometry: geom.Geometry
    spacing_mm: float
    frequency_mhz: float
    layers: tuple[int, ...]  # tissue ids from the probe face down
    boundaries: tuple[_Boundary, ...]  # len(layers) - 1
    center: tuple[float, float]
    semi_axes: tuple[float, float]  # (along u, along v), mm
    angle: float
    mirrored: bool
    organs: tuple[tuple[int, object], ...]  # (tissue id, shape), painted in order
    gestational_age_weeks: float
    plane_reason: str


def hadlock_ac_mm(ga_weeks: float) -> float:
    """Mean abdominal circumference (mm) at a gestational age (weeks), Hadlock et al. 1984.

    ``AC (cm) = -13.3 + 1.61 GA - 0.00998 GA^2`` (Radiology 152:497): 149 mm at 20 weeks,
    351 mm at 40.
    """
    return 10 * (-13.3 + 1.61 * ga_weeks - 0.00998 * ga_weeks ** 2)


# --------------------------------------------------------------------------- drawing a scene

def _draw_size(rng: np.random.Generator) -> tuple[float, float, float]:
    """Gestational age (weeks) and the abdomen's semi-axes (mm) along u and v."""
    while True:  # redraw rather than clip, so that no AC value piles up at the limits
        age = rng.uniform(20, 40)
        ac = hadlock_ac_mm(age) * math.exp(rng.normal(0, AC_SPREAD))
        if AC_RANGE_MM[0] <= ac <= AC_RANGE_MM[1]:
            break
    ratio = rng.uniform(0.85, 1.0)
    a = ac / ellipse_perimeter(1.0, ratio)
    return (age, a, a * ratio) if rng.random() < 0.5 else (age, a * ratio, a)


def _vein_path(rng: np.random.Generator, a: float, b: float) -> tuple[tuple[float, float], ...]:
    """The intrahepatic umbilical vein: from the anterior wall back and towards the right."""
    start = np.array([a * rng.uniform(-0.06, 0.06), b * rng.uniform(0.55, 0.68)])
    end = np.array([-a * rng.uniform(0.25, 0.38), b * rng.uniform(0.0, 0.15)])
    control = np.array([start[0] + a * rng.uniform(-0.05, 0.05), end[1] + b * rng.uniform(0.0, 0.1)])
    t = np.linspace(0, 1, 17)[:, None]  # a quadratic Bezier curve: the "J"
    curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * control + t ** 2 * end
    return tuple(map(tuple, curve.tolist()))


def _draw_organs(rng: np.random.Generator, a: float, b: float, reason: str) -> tuple:
    """Fetal organs inside the skin ellipse (semi-axes a, b mm), in painting order."""
    s = math.sqrt(a * b) / 40  # organ sizes scale with the abdomen (40 mm: AC about 250 mm)
    wall = rng.uniform(2.0, 3.0) * s
    organs = [(TISSUE["body_wall"], _Band(a, b, 1 - wall / math.sqrt(a * b), 1.0))]
    spine_v = -b + rng.uniform(11, 13) * s  # vertebral body centre
    if reason == RENAL_LEVEL:
        for side in (1, -1):
            u, v = side * a * rng.uniform(0.28, 0.34), spine_v + rng.uniform(2, 5) * s
            organs.append((TISSUE["kidney"], _Blob(u, v, a * rng.uniform(0.13, 0.16), b * rng.uniform(0.17, 0.2),
                                                   side * rng.uniform(5, 25))))
            organs.append((TISSUE["renal_sinus"], _Blob(u - side * 1.5 * s, v, 2.2 * s, 3.5 * s)))
    for _ in range(rng.integers(2, 5)):  # hepatic and portal veins, cut across
        radius = rng.uniform(0.8, 1.5) * s
        organs.append((TISSUE["vessel"], _Blob(a * rng.uniform(-0.45, 0.1), b * rng.uniform(-0.2, 0.45),
                                               radius * rng.uniform(1, 2), radius,
                                               rng.uniform(0, 180))))
    if reason not in (NO_STOMACH, RENAL_LEVEL):
        organs.append((TISSUE["stomach"], _Blob(
            a * rng.uniform(0.28, 0.4), b * rng.uniform(-0.05, 0.25), a * rng.uniform(0.15, 0.23),
            b * rng.uniform(0.11, 0.17), rng.uniform(-40, 40))))
    if reason not in (NO_VEIN, RENAL_LEVEL):
        vein = _Tube(_vein_path(rng, a, b), rng.uniform(1.5, 2.3) * s)
        organs.append((TISSUE["umbilical_vein"], vein))
    organs.append((TISSUE["vessel"], _Blob(2.5 * s, spine_v + 5 * s, 1.6 * s, 1.6 * s)))  # aorta
    organs.append((TISSUE["spine"], _Blob(0.0, spine_v, 3.8 * s, 3.3 * s)))
    for side in (1, -1):  # the laminae converge behind the spinal canal
        lamina = _Blob(side * 3.6 * s, spine_v - 5.6 * s, 3.2 * s, 1.3 * s, side * 53)
        organs.append((TISSUE["spine"], lamina))
    rib_rho = 1 - (wall + 0.8 * s) / math.sqrt(a * b)
    for side in (1, -1):
        psi = rng.uniform(-40, -5)  # lateral, slightly posterior
        ribs = [psi, psi + rng.uniform(28, 38)] if rng.random() < 0.4 else [psi]
        for angle in ribs:
            thickness = rng.uniform(1.2, 1.8) * s / math.sqrt(a * b)
            rib = _Band(a, b, rib_rho - thickness, rib_rho, angle if side > 0 else 180 - angle,
                        rng.uniform(8, 18))
            organs.append((TISSUE["rib"], rib))
    return tuple(organs)


def _wave(rng: np.random.Generator, depth: float, amplitude: float, tilt: float = 0.0) -> _Boundary:
    return _Boundary(depth, tilt, rng.uniform(0, amplitude), rng.uniform(0.3, 1.5),
                     rng.uniform(0, 2 * np.pi))


def _layers_above(rng: np.random.Generator) -> tuple[list[int], list[_Boundary], float]:
    """Maternal wall, uterine wall and maybe placenta above the fluid; the fluid's deepest start."""
    layers = ["maternal_skin", "fat", "fascia", "muscle", "myometrium"]
    thickness = [1.5, rng.uniform(3, 12), rng.uniform(0.6, 1.0), rng.uniform(4, 12), rng.uniform(5, 10)]
    if rng.random() < 0.35:
        layers.append("placenta")
        thickness.append(rng.uniform(15, 35))
    layers.append("amniotic_fluid")
    maternal = _wave(rng, 0, 1.5)  # the maternal layers undulate together, parallel to the face
    uterine_tilt = rng.uniform(-8, 8)
    boundaries, depth = [], 0.0
    for k, step in enumerate(thickness):
        depth += step
        boundaries.append(dataclasses.replace(maternal, depth=depth) if k < 3
                          else _wave(rng, depth, 4, uterine_tilt))
    deepest = 0.0
    for boundary in boundaries:  # as _layer_tissue enforces, layers never get thinner than MIN_LAYER_MM
        deepest = max(boundary.deepest, deepest + MIN_LAYER_MM)
    return [TISSUE[n] for n in layers], boundaries, deepest


def _layers_below(rng: np.random.Generator, fluid_end: float,
                  placenta: bool) -> tuple[list[int], list[_Boundary]]:
    """Posterior placenta, uterine wall, maternal viscera below the fluid (from ``fluid_end`` on)."""
    tilt = rng.uniform(-8, 8)
    first = _wave(rng, 0, 4, tilt)
    depth = fluid_end + abs(tilt) / 2 + first.amplitude
    layers, boundaries = [], [dataclasses.replace(first, depth=depth)]
    steps = [("placenta", rng.uniform(15, 35))] if placenta else []
    steps.append(("myometrium", rng.uniform(5, 10)))
    for name, step in steps:
        depth += step
        layers.append(TISSUE[name])
        boundaries.append(_wave(rng, depth, 4, tilt))
    return layers + [TISSUE["maternal_viscera"]], boundaries


def _probe(rng: np.random.Generator, kind: str, shape: tuple[int, int], depth_mm: float,
           center_mm: float, extent_mm: float) -> tuple[geom.Geometry, float]:
    """Probe geometry (px) and spacing (mm/px) imaging ``depth_mm`` below the face.

    The fan fills the image height unless the image is too narrow for the abdomen (centre
    ``center_mm`` below the face, radius ``extent_mm``); a convex fan is made wide enough for it.
    """
    height, width = shape
    min_spacing = (2 * extent_mm + 10) / (width - 3)  # the abdomen and some fluid side by side
    if kind == "convex":
        radius = rng.uniform(40, 60)
        needed = math.degrees(math.asin(min(1.0, (extent_mm + 3) / (radius + center_mm))))
        half = max(rng.uniform(30, 38), needed + 2)
        extent = radius + depth_mm - radius * math.cos(math.radians(half))  # top corners to bottom
        spacing = max(extent / (height - 3), min_spacing)
        r0 = radius / spacing
        return geom.ConvexProbe(((width - 1) / 2, 1 - r0 * math.cos(math.radians(half))), r0,
                                r0 + depth_mm / spacing, (-half, half)), spacing
    steer = 0.0 if rng.random() < 0.6 else float(rng.choice([-1, 1]) * rng.uniform(5, 15))
    lean_mm = depth_mm * math.sin(math.radians(steer))  # the strip leans sideways by this much
    spacing = max(depth_mm * math.cos(math.radians(steer)) / (height - 3),
                  min_spacing + abs(lean_mm) / (width - 3))
    shift = lean_mm / spacing
    return geom.LinearProbe((1 + max(0.0, -shift), 1.0), width - 3 - abs(shift), 0.0,
                            depth_mm / spacing, steer), spacing


def _fits(g: geom.Geometry, shape: tuple[int, int], center: tuple[float, float], radius: float) -> bool:
    """Whether a circle (px) lies inside the fan and the image, with a 2 px margin."""
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x, y = center[0] + (radius + 2) * np.cos(t), center[1] + (radius + 2) * np.sin(t)
    depth, lateral = geom.image_to_beam(g, x, y)
    lo, hi = geom.lateral_range(g)
    return bool(np.all((x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)
                       & (depth >= g.start_depth) & (depth <= g.end_depth)
                       & (lateral >= lo) & (lateral <= hi)))


def _place(rng: np.random.Generator, g: geom.Geometry, shape: tuple[int, int], depth_px: float,
           radius_px: float) -> tuple[float, float]:
    """A random abdomen centre at ``depth_px`` below the face whose circle fits the fan."""
    lo, hi = geom.lateral_range(g)
    for _ in range(30):
        if isinstance(g, geom.ConvexProbe):
            lateral = rng.uniform(0.6 * lo, 0.6 * hi)
        else:
            lateral = rng.uniform(lo + radius_px, max(lo + radius_px, hi - radius_px))
        x, y = geom.beam_to_image(g, g.start_depth + depth_px, lateral)
        if _fits(g, shape, (float(x), float(y)), radius_px):
            return float(x), float(y)
    x, y = geom.beam_to_image(g, g.start_depth + depth_px, (lo + hi) / 2)  # the widest place
    return float(x), float(y)


def draw_scene(rng: np.random.Generator, shape: tuple[int, int] = (256, 256),
               probe: str = "convex", unacceptable_share: float = 0.3) -> Scene:
    """Draw the anatomy, probe and plane of one case (see the module docstring)."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {PROBES}")
    if probe == "mixed":
        probe = "convex" if rng.random() < CONVEX_SHARE_MIXED else "linear"
    age, a, b = _draw_size(rng)
    reason = UNACCEPTABLE[rng.integers(3)] if rng.random() < unacceptable_share else ACCEPTABLE
    organs = _draw_organs(rng, a, b, reason)
    above, top, fluid_start = _layers_above(rng)
    # Depths along the beam; 1.04 covers a steered linear beam's longer path past the fetus.
    extent = max(a, b) * 1.04
    center_depth = fluid_start + rng.uniform(3, 20) + extent
    below, bottom = _layers_below(rng, center_depth + extent + rng.uniform(3, 25),
                                  TISSUE["placenta"] not in above and rng.random() < 0.5)
    depth_mm = center_depth + extent + rng.uniform(12, 45)
    g, spacing = _probe(rng, probe, shape, depth_mm, center_depth, extent)
    center = _place(rng, g, shape, center_depth / spacing, max(a, b) / spacing)
    return Scene(geometry=g, spacing_mm=spacing,
                 frequency_mhz=float(np.clip(5.0 - 0.015 * (depth_mm - 80), 2.0, 5.0)),
                 layers=tuple(above + below), boundaries=tuple(top + bottom), center=center,
                 semi_axes=(a, b), angle=rng.uniform(0, 360), mirrored=bool(rng.random() < 0.5),
                 organs=organs, gestational_age_weeks=age, plane_reason=reason)


# --------------------------------------------------------------------------- anatomy -> tissue ids

def _layer_tissue(scene: Scene, face_depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Layer tissue ids at a depth below the face (mm) and lateral position (0..1), broadcast."""
    index = np.zeros(np.broadcast_shapes(face_depth.shape, lateral.shape), np.intp)
    previous = -np.inf
    for boundary in scene.boundaries:  # evaluated on `lateral` alone: one row for a beam grid
        depth = np.maximum(boundary.at(lateral), previous + MIN_LAYER_MM)  # layers never cross
        index += face_depth >= depth
        previous = depth
    return np.asarray(scene.layers, np.uint8)[index]


def _paint_fetus(scene: Scene, tissue: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Paint the fetal abdomen over layer tissue ids at image coordinates ``x``, ``y`` (px)."""
    c, s = math.cos(math.radians(scene.angle)), math.sin(math.radians(scene.angle))
    dx, dy = (x - scene.center[0]) * scene.spacing_mm, (y - scene.center[1]) * scene.spacing_mm
    u, v = (dx * c + dy * s) * (-1 if scene.mirrored else 1), dy * c - dx * s
    a, b = scene.semi_axes
    body = (u / a) ** 2 + (v / b) ** 2 <= 1
    u, v = u[body], v[body]  # organs only need the points inside the skin line
    inner = np.full(u.shape, TISSUE["liver"], np.uint8)
    for tissue_id, shape in scene.organs:
        inner[shape.contains(u, v)] = tissue_id
    tissue[body] = inner
    return tissue


def _normalised_lateral(g: geom.Geometry, lateral: np.ndarray) -> np.ndarray:
    lo, hi = geom.lateral_range(g)
    return (lateral - lo) / (hi - lo)


def tissue_at(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Tissue ids (indices into :data:`TISSUES`) at image coordinates ``x``, ``y`` (px)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    g = scene.geometry
    depth, lateral = geom.image_to_beam(g, x, y)
    face_depth = (depth - g.start_depth) * scene.spacing_mm
    tissue = _layer_tissue(scene, face_depth, _normalised_lateral(g, lateral))
    return _paint_fetus(scene, tissue, x, y)


def abdomen_ellipse(scene: Scene) -> Ellipse:
    """The skin-line ellipse in pixels, as :class:`fetal_biometry.ellipse.Ellipse` (a >= b)."""
    a, b = (axis / scene.spacing_mm for axis in scene.semi_axes)
    if a >= b:
        return Ellipse(*scene.center, a, b, scene.angle % 180)
    return Ellipse(*scene.center, b, a, (scene.angle + 90) % 180)


# --------------------------------------------------------------------------- physics

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
    bone = _BONE[tissue]
    loss = _two_way_loss_db(np.where(bone, _ATTENUATION[tissue], 0),
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
    echo = _ECHO[tissue] if texture is None else _ECHO[tissue] * texture
    density = _DENSITY[tissue]
    hits = rng.random(tissue.shape, dtype=np.float32) < density
    scale = np.where(hits, echo / np.sqrt(2 * density), 0).astype(np.float32)
    field = rng.standard_normal((*tissue.shape, 2), dtype=np.float32) * scale[..., None]  # (I, Q)
    field[..., 0] += SPECULAR_GAIN * _specular(_IMPEDANCE[tissue], dz, pitch_mm)
    attenuation = _ATTENUATION[tissue]
    loss = _two_way_loss_db(attenuation, dz, frequency_mhz)
    field *= (10 ** (-loss / 20)).astype(np.float32)[..., None]
    soft_loss = _two_way_loss_db(np.where(_BONE[tissue], 0, attenuation), dz, frequency_mhz)
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


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    coarse = rng.normal(0, TEXTURE_SIGMA, [max(2, n // TEXTURE_CELL) for n in shape])
    return np.exp(cv2.resize(coarse.astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC))


# --------------------------------------------------------------------------- whole cases

@dataclasses.dataclass(frozen=True, eq=False)
class BeamGrid:
    """The physics grid of a scene: tissue ids, depth below the face and beam pitch (mm)."""

    tissue: np.ndarray
    depth_mm: np.ndarray
    pitch_mm: np.ndarray


def beam_grid(scene: Scene) -> BeamGrid:
    """Sample a scene's anatomy on its beam grid (see the module docstring)."""
    g = scene.geometry
    lo, hi = geom.lateral_range(g)
    across = g.end_depth * math.radians(hi - lo) if isinstance(g, geom.ConvexProbe) else g.width
    shape = (math.ceil(SAMPLES_PER_PIXEL * (g.end_depth - g.start_depth)) + 1,
             math.ceil(across / BEAM_PITCH_PX) + 1)
    depth, lateral = geom.beam_samples(g, shape)
    face_depth = (depth - g.start_depth) * scene.spacing_mm
    tissue = _layer_tissue(scene, face_depth[:, None], _normalised_lateral(g, lateral)[None, :])
    tissue = _paint_fetus(scene, tissue, *geom.beam_to_image(g, depth[:, None], lateral[None, :]))
    step = lateral[1] - lateral[0]
    pitch = depth * math.radians(step) if isinstance(g, geom.ConvexProbe) else np.full(shape[0], step)
    return BeamGrid(tissue, face_depth, pitch * scene.spacing_mm)


def ground_truth(scene: Scene, shape: tuple[int, int], grid: BeamGrid) -> tuple[np.ndarray, np.ndarray]:
    """Label map (dataset classes) and tissue ids on the pixel grid of ``shape``.

    Labels come from the anatomy at each pixel centre, then shadow from :func:`shadow_mask`
    on ``grid`` (over everything but bone), then ``OUTSIDE`` (255) outside the fan.
    """
    g = scene.geometry
    y, x = np.indices(shape)
    tissue = tissue_at(scene, x, y)
    labels = _LABEL[tissue]
    shadow = shadow_mask(grid.tissue, grid.depth_mm, grid.pitch_mm, scene.frequency_mhz)
    shadowed = geom.scan_convert(shadow.astype(np.uint8), g, shape, nearest=True).astype(bool)
    labels[shadowed & ~_BONE[tissue]] = SHADOW
    labels[~geom.fan_mask(g, shape)] = OUTSIDE
    return labels, tissue


def _hidden(labels: np.ndarray, tissue: np.ndarray) -> str | None:
    """Why an acceptable plane's stomach or vein cannot be seen (shadow, fan), or None."""
    for name, label, what in (("stomach", STOMACH, "stomach bubble"),
                              ("umbilical_vein", VEIN, "umbilical vein")):
        drawn = np.count_nonzero(tissue == TISSUE[name])
        if np.count_nonzero(labels == label) < VISIBLE_SHARE * drawn:
            return f"{what} hidden in acoustic shadow"
    return None


def draw_display(rng: np.random.Generator) -> tuple[float, float]:
    """Display settings: dynamic range (dB) and the level (dB) shown white."""
    return rng.uniform(50, 60), rng.uniform(24, 30)  # liver mid-gray


def scan_image(scene: Scene, grid: BeamGrid, shape: tuple[int, int], rng: np.random.Generator,
               display: tuple[float, float] | None = None) -> np.ndarray:
    """The B-mode image (uint8) of a scene: physics on its beam grid, log compression with
    ``display`` (:func:`draw_display`, drawn here when None), scan conversion into the fan."""
    envelope = beam_envelope(grid.tissue, grid.depth_mm, grid.pitch_mm, scene.frequency_mhz, rng,
                             _texture(rng, grid.tissue.shape))
    dynamic_range, top_db = draw_display(rng) if display is None else display
    gray = log_compress(envelope, dynamic_range, top_db)
    return np.rint(geom.scan_convert(gray, scene.geometry, shape)).astype(np.uint8)


def simulate_case(seed: int, index: int, shape: tuple[int, int] = (256, 256),
                  probe: str = "convex", unacceptable_share: float = 0.3) -> dataset.Case:
    """Simulate case ``index`` of the dataset with ``seed``: a scan with its ground truth.

    Parameters
    ----------
    seed, index : int
        Non-negative; the case's random numbers come from ``default_rng([seed, index])``.
    shape : (H, W)
        Image size in pixels.
    probe : {'convex', 'linear', 'mixed'}
        Probe type; 'mixed' draws convex two times in three.
    unacceptable_share : float
        Probability that the plane is drawn unacceptable for AC.

    Returns
    -------
    fetal_biometry.dataset.Case
        Named ``sim<index:05d>``.
    """
    rng = np.random.default_rng([seed, index])
    for _ in range(MAX_ATTEMPTS):  # redraw acceptable planes whose landmarks fall in shadow
        scene = draw_scene(rng, shape, probe, unacceptable_share)
        grid = beam_grid(scene)
        labels, tissue = ground_truth(scene, shape, grid)
        hidden = _hidden(labels, tissue) if scene.plane_reason == ACCEPTABLE else None
        if hidden is None:
            break
    image = scan_image(scene, grid, shape, rng)
    ellipse = abdomen_ellipse(scene)
    return dataset.Case(
        name=f"sim{index:05d}", image=image, labels=labels, geometry=scene.geometry,
        spacing_mm=scene.spacing_mm,
        biometry=dataset.Biometry(
            ellipse=ellipse, circumference_mm=ellipse_perimeter(ellipse.a, ellipse.b) * scene.spacing_mm,
            plane_acceptable=hidden is None and scene.plane_reason == ACCEPTABLE,
            plane_reason=hidden or scene.plane_reason,
            gestational_age_weeks=scene.gestational_age_weeks))


def simulate(count: int, seed: int = 0, shape: tuple[int, int] = (256, 256), probe: str = "convex",
             unacceptable_share: float = 0.3) -> Iterator[dataset.Case]:
    """Cases ``0 .. count-1`` of the dataset with ``seed`` (see :func:`simulate_case`)."""
    for index in range(count):
        yield simulate_case(seed, index, shape, probe, unacceptable_share)


def write(out, count: int, seed: int = 0, shape: tuple[int, int] = (256, 256), probe: str = "convex",
          unacceptable_share: float = 0.3, progress=None) -> None:
    """Simulate ``count`` cases into a dataset folder at ``out`` (written aside, then renamed).

    ``progress`` wraps the case iterator (e.g. ``functools.partial(tqdm, total=count)``).
    """
    cases = simulate(count, seed, shape, probe, unacceptable_share)
    dataset.write_dataset(out, progress(cases) if progress else cases,
                          generator_record(seed, shape, probe, unacceptable_share))


def generator_record(seed: int, shape: tuple[int, int], probe: str, unacceptable_share: float) -> dict:
    """The ``generator`` entry of a simulated dataset's dataset.json."""
    return {"name": "fetal_biometry.simulator", "version": __version__, "seed": seed,
            "shape": list(shape), "probe": probe, "unacceptable_share": unacceptable_share}
