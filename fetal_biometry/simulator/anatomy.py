"""Anatomy of one simulated case: the fetal abdomen, the layers around it, the probe and the plane.

A :class:`Scene` holds everything random about a case but no pixels; :func:`tissue_at` turns
it into tissue ids (:mod:`fetal_biometry.simulator.tissues`) at any image coordinates.
Anatomy is in mm in a fetal frame (``u`` towards the fetal left, ``v`` anterior).

What varies from case to case beyond the first round's drawing is set by
:class:`~fetal_biometry.simulator.appearance.AnatomyRanges` (every range documented there):

- **echogenicity**: each echogenic soft tissue's echo is scaled per case (:attr:`Scene.echo_scale`,
  which the physics multiplies into the scatterer amplitudes);
- **maternal**: thickness of fat, muscle and placenta, and where the placenta lies;
- **distractors**, look-alikes of the landmarks: free umbilical cord loops in the fluid
  (Wharton's jelly around a vein and two arteries; labelled *background*, never vein: the
  vein class is the intrahepatic umbilical vein), branching portal vessels in the liver and
  the gallbladder (dark, labelled *abdomen*), the kidneys' upper poles partly in plane
  (*abdomen*), an arm or leg beside the abdomen (soft tissue and a bone that shadows,
  labelled *background*);
- **unfit planes** (:data:`UNFIT`): no stomach bubble, no umbilical vein, renal level, too
  high (heart and lungs), too low (the cord insertion at the anterior wall), oblique (an
  oval with axis ratio well below a transverse section's 0.85-1.0) and the umbilical vein
  reaching the skin line. The abdomen ellipse of an unfit plane is still the true one.

Random numbers: what the first round drew comes from the case's generator in the same order
(a range only changes the bounds), everything new from a child generator spawned from it
(:meth:`numpy.random.Generator.spawn`, which leaves the parent's stream alone), so the
:data:`~fetal_biometry.simulator.appearance.NARROW` ranges reproduce the first round's
scans byte for byte.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.measure.ellipse import Ellipse, ellipse_perimeter
from fetal_biometry.simulator.appearance import AnatomyRanges, TRAINING
from fetal_biometry.simulator.layout import MIN_LAYER_MM, Boundary, probe_and_layers
from fetal_biometry.simulator.tissues import ABDOMEN_TISSUES, BONE, ECHO, TISSUE, TISSUES

PROBES = ("convex", "linear", "mixed")
CONVEX_SHARE_MIXED = 2 / 3  # fetal abdomens are scanned with convex probes; some linear ones
AC_RANGE_MM = (150.0, 380.0)
AC_SPREAD = 0.05  # relative standard deviation of AC at a given age

ACCEPTABLE = "stomach bubble and umbilical vein in plane"
NO_STOMACH = "stomach bubble not in plane"
NO_VEIN = "umbilical vein not in plane"
RENAL_LEVEL = "wrong level: kidneys in plane, no stomach bubble or umbilical vein"
TOO_HIGH = "too high: heart and lungs in plane, no stomach bubble or umbilical vein"
CORD_INSERTION = "too low: cord insertion at the anterior wall, no stomach bubble"
OBLIQUE = "oblique plane: abdomen section too elongated"
VEIN_AT_SKIN = "umbilical vein runs out to the skin line"
UNFIT = {"no_stomach": NO_STOMACH, "no_vein": NO_VEIN, "renal_level": RENAL_LEVEL,
         "too_high": TOO_HIGH, "cord_insertion": CORD_INSERTION, "oblique": OBLIQUE,
         "vein_at_skin": VEIN_AT_SKIN}  # AnatomyRanges.unfit_kinds key -> plane reason
UNACCEPTABLE = tuple(UNFIT.values())
_NO_STOMACH = (NO_STOMACH, RENAL_LEVEL, TOO_HIGH, CORD_INSERTION)  # reasons drawn without one
_NO_VEIN = (NO_VEIN, RENAL_LEVEL, TOO_HIGH, CORD_INSERTION)
EVERY_JITTERED = np.flatnonzero((ECHO >= 0.1) & ~BONE)  # tissues whose echogenicity varies by case
JITTERED = EVERY_JITTERED[EVERY_JITTERED < ABDOMEN_TISSUES]  # those an abdomen case draws


# --------------------------------------------------------------------------- shapes (fetal frame, mm)

def turned(u: np.ndarray, v: np.ndarray, centre_u: float, centre_v: float,
           angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of (u, v) along and across a shape centred at (centre_u, centre_v) whose
    first axis points ``angle`` degrees from +u."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    du, dv = u - centre_u, v - centre_v
    return du * c + dv * s, dv * c - du * s


@dataclasses.dataclass(frozen=True)
class Blob:
    """Ellipse centred at (u, v) with semi-axes (ru, rv), the first at ``angle`` degrees from +u."""

    u: float
    v: float
    ru: float
    rv: float
    angle: float = 0.0

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        along, across = turned(u, v, self.u, self.v, self.angle)
        return (along / self.ru) ** 2 + (across / self.rv) ** 2 <= 1


@dataclasses.dataclass(frozen=True)
class Tube:
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
class Band:
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
    boundaries: tuple[Boundary, ...]  # len(layers) - 1
    center: tuple[float, float]
    semi_axes: tuple[float, float]  # (along u, along v), mm
    angle: float
    mirrored: bool
    organs: tuple[tuple[int, object], ...]  # (tissue id, shape), painted in order
    gestational_age_weeks: float
    plane_reason: str
    outside: tuple[tuple[int, object], ...] = ()  # (tissue id, shape) in the fluid, fetal frame
    echo_scale: np.ndarray = dataclasses.field(  # per tissue id, multiplies its echogenicity
        default_factory=lambda: np.ones(len(TISSUES), np.float32))
    interior: int = TISSUE["liver"]  # what fills the body ellipse under the organs (head: brain)


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


def _vein_path(rng: np.random.Generator, a: float, b: float,
               to_skin: bool = False) -> tuple[tuple[float, float], ...]:
    """The intrahepatic umbilical vein: from the anterior wall back and towards the right.

    ``to_skin``: it starts beyond the skin line instead (the plane cuts its course outside the liver).
    """
    start = np.array([a * rng.uniform(-0.06, 0.06), b * rng.uniform(0.55, 0.68)])
    if to_skin:
        start[1] = 1.05 * b
    end = np.array([-a * rng.uniform(0.25, 0.38), b * rng.uniform(0.0, 0.15)])
    control = np.array([start[0] + a * rng.uniform(-0.05, 0.05), end[1] + b * rng.uniform(0.0, 0.1)])
    t = np.linspace(0, 1, 17)[:, None]  # a quadratic Bezier curve: the "J"
    curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * control + t ** 2 * end
    return tuple(map(tuple, curve.tolist()))


def _kidneys(rng: np.random.Generator, a: float, b: float, spine_v: float,
             size: float = 1.0) -> list:
    """Both kidneys beside the spine, their sections ``size`` (0..1) of the renal level's."""
    s = math.sqrt(a * b) / 40
    organs = []
    for side in (1, -1):
        u, v = side * a * rng.uniform(0.28, 0.34), spine_v + rng.uniform(2, 5) * s
        organs.append((TISSUE["kidney"], Blob(u, v, a * rng.uniform(0.13, 0.16) * size,
                                               b * rng.uniform(0.17, 0.2) * size, side * rng.uniform(5, 25))))
        organs.append((TISSUE["renal_sinus"], Blob(u - side * 1.5 * s * size, v, 2.2 * s * size,
                                                    3.5 * s * size)))
    return organs


def thorax(a: float, b: float, grown: float) -> tuple:
    """Lungs and heart (its four chambers as two pairs of blood pools), grown (0..1) from the
    diaphragm up; painted over the liver of an abdomen with semi-axes a, b (mm)."""
    heart = [(TISSUE["heart"], Blob(0.12 * a, 0.2 * b, 0.42 * a * grown, 0.38 * b * grown, 15))]
    for side in (1, -1):
        heart.append((TISSUE["vessel"], Blob(0.12 * a + side * 0.13 * a * grown, 0.2 * b,
                                             0.09 * a * grown, 0.2 * b * grown, 15)))
    lungs = [(TISSUE["lung"], Blob(side * 0.42 * a, -0.05 * b, 0.38 * a * grown, 0.5 * b * grown))
             for side in (1, -1)]
    return tuple(lungs + heart)


def _spine_level(a: float, b: float) -> float:
    """A typical vertebral body centre (v, mm): where :func:`draw_organs` puts it on average."""
    return -b + 12 * math.sqrt(a * b) / 40


def draw_organs(rng: np.random.Generator, a: float, b: float, reason: str) -> tuple:
    """Fetal organs inside the skin ellipse (semi-axes a, b mm), in painting order.

    The landmarks follow the plane ``reason``; a cord insertion's vein is drawn by
    :func:`draw_scene` (it belongs with the cord outside).
    """
    s = math.sqrt(a * b) / 40  # organ sizes scale with the abdomen (40 mm: AC about 250 mm)
    wall = rng.uniform(2.0, 3.0) * s
    organs = [(TISSUE["body_wall"], Band(a, b, 1 - wall / math.sqrt(a * b), 1.0))]
    spine_v = -b + rng.uniform(11, 13) * s  # vertebral body centre
    if reason == RENAL_LEVEL:
        organs += _kidneys(rng, a, b, spine_v)
    for _ in range(rng.integers(2, 5)):  # hepatic and portal veins, cut across
        radius = rng.uniform(0.8, 1.5) * s
        organs.append((TISSUE["vessel"], Blob(a * rng.uniform(-0.45, 0.1), b * rng.uniform(-0.2, 0.45),
                                               radius * rng.uniform(1, 2), radius,
                                               rng.uniform(0, 180))))
    if reason not in _NO_STOMACH:
        organs.append((TISSUE["stomach"], Blob(
            a * rng.uniform(0.28, 0.4), b * rng.uniform(-0.05, 0.25), a * rng.uniform(0.15, 0.23),
            b * rng.uniform(0.11, 0.17), rng.uniform(-40, 40))))
    if reason == TOO_HIGH:
        organs += thorax(a, b, rng.uniform(0.5, 1.0))
    if reason not in _NO_VEIN:
        vein = Tube(_vein_path(rng, a, b, to_skin=reason == VEIN_AT_SKIN), rng.uniform(1.5, 2.3) * s)
        organs.append((TISSUE["umbilical_vein"], vein))
    organs.append((TISSUE["vessel"], Blob(2.5 * s, spine_v + 5 * s, 1.6 * s, 1.6 * s)))  # aorta
    organs.append((TISSUE["spine"], Blob(0.0, spine_v, 3.8 * s, 3.3 * s)))
    for side in (1, -1):  # the laminae converge behind the spinal canal
        lamina = Blob(side * 3.6 * s, spine_v - 5.6 * s, 3.2 * s, 1.3 * s, side * 53)
        organs.append((TISSUE["spine"], lamina))
    rib_rho = 1 - (wall + 0.8 * s) / math.sqrt(a * b)
    for side in (1, -1):
        psi = rng.uniform(-40, -5)  # lateral, slightly posterior
        ribs = [psi, psi + rng.uniform(28, 38)] if rng.random() < 0.4 else [psi]
        for angle in ribs:
            thickness = rng.uniform(1.2, 1.8) * s / math.sqrt(a * b)
            rib = Band(a, b, rib_rho - thickness, rib_rho, angle if side > 0 else 180 - angle,
                        rng.uniform(8, 18))
            organs.append((TISSUE["rib"], rib))
    return tuple(organs)


# --------------------------------------------------------------------------- distractors, unfit planes

def _within(point: np.ndarray, a: float, b: float, rho: float) -> tuple[float, float]:
    """``point`` (u, v), pulled towards the centre to normalised radius ``rho`` at most."""
    r = math.hypot(point[0] / a, point[1] / b)
    return tuple((point * min(1.0, rho / r) if r > 0 else point).tolist())


def _portal_vessels(rng: np.random.Generator, a: float, b: float) -> list:
    """One or two portal veins branching in the liver: a trunk and two branches, cut along."""
    s, organs = math.sqrt(a * b) / 40, []
    for _ in range(rng.integers(1, 3)):
        root = np.array([a * rng.uniform(-0.45, 0.05), b * rng.uniform(-0.2, 0.3)])
        fork = root + [a * rng.uniform(-0.15, 0.15), b * rng.uniform(-0.15, 0.15)]
        radius = rng.uniform(0.7, 1.2) * s
        organs.append((TISSUE["vessel"], Tube((_within(root, a, b, 0.8), _within(fork, a, b, 0.8)), radius)))
        for _ in range(2):
            tip = fork + [a * rng.uniform(-0.15, 0.15), b * rng.uniform(-0.15, 0.15)]
            organs.append((TISSUE["vessel"], Tube((_within(fork, a, b, 0.8), _within(tip, a, b, 0.8)),
                                                  0.7 * radius)))
    return organs


def _gallbladder(rng: np.random.Generator, a: float, b: float) -> list:
    """The gallbladder: a pear (fundus and neck) on the fetal right, anechoic like the stomach."""
    s = math.sqrt(a * b) / 40
    u, v = -a * rng.uniform(0.22, 0.36), b * rng.uniform(-0.2, 0.15)
    length, width, angle = rng.uniform(3.5, 5.5) * s, rng.uniform(2.0, 3.0) * s, rng.uniform(0, 180)
    c, t = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    neck = Blob(u + 0.9 * length * c, v + 0.9 * length * t, 0.6 * length, 0.45 * width, angle)
    return [(TISSUE["gallbladder"], Blob(u, v, length, width, angle)), (TISSUE["gallbladder"], neck)]


def draw_inner_distractors(rng: np.random.Generator, a: float, b: float, ranges: AnatomyRanges,
                           reason: str) -> list:
    """Look-alikes inside the abdomen, painted before the landmarks (which cover them)."""
    organs = []
    if rng.random() < ranges.portal_vessel_share:
        organs += _portal_vessels(rng, a, b)
    if rng.random() < ranges.gallbladder_share:
        organs += _gallbladder(rng, a, b)
    if rng.random() < ranges.kidney_share and reason not in (RENAL_LEVEL, TOO_HIGH):
        organs += _kidneys(rng, a, b, _spine_level(a, b), rng.uniform(0.35, 0.65))
    return organs


def _radius_towards(a: float, b: float, phi: float) -> float:
    """Distance (mm) from the abdomen centre to its skin line in direction ``phi`` (rad from +u)."""
    return 1 / math.hypot(math.cos(phi) / a, math.sin(phi) / b)


def _beside(rng: np.random.Generator, a: float, b: float, gap: tuple[float, float],
            radius: float) -> tuple[np.ndarray, float]:
    """A random centre for an object of ``radius`` outside the skin line, ``gap`` (mm) away;
    and the direction (rad) from the abdomen to it."""
    phi = rng.uniform(0, 2 * math.pi)
    distance = _radius_towards(a, b, phi) + rng.uniform(*gap) + radius
    return distance * np.array([math.cos(phi), math.sin(phi)]), phi


def _cord_along(start: np.ndarray, direction: float, length: float, bend: float, jelly: float,
                vein: float, turns: float, phase: float) -> list:
    """A stretch of cord cut along: jelly around the vein, two arteries coiling round it."""
    t = np.linspace(0, 1, 17)[:, None]
    forward = np.array([math.cos(direction), math.sin(direction)])
    normal = np.array([-forward[1], forward[0]])
    path = start + t * length * forward + (4 * t * (1 - t)) * bend * normal  # a bent loop
    artery = 0.55 * vein
    organs = [(TISSUE["cord_jelly"], Tube(tuple(map(tuple, path.tolist())), jelly)),
              (TISSUE["cord_vessel"], Tube(tuple(map(tuple, path.tolist())), vein))]
    for offset in (0.0, math.pi):
        coil = path + normal * (vein + 0.8 * artery) * np.sin(2 * np.pi * turns * t + phase + offset)
        organs.append((TISSUE["cord_vessel"], Tube(tuple(map(tuple, coil.tolist())), artery)))
    return organs


def _cord_across(center: np.ndarray, jelly: float, vein: float, angle: float) -> list:
    """A loop of cord cut across: the three-vessel section (a vein, two smaller arteries)."""
    artery, c, t = 0.55 * vein, math.cos(angle), math.sin(angle)
    vein_at = center + 0.35 * jelly * np.array([c, t])
    organs = [(TISSUE["cord_jelly"], Blob(*center, jelly, 0.85 * jelly, math.degrees(angle))),
              (TISSUE["cord_vessel"], Blob(*vein_at, vein, vein))]
    for side in (1, -1):
        at = center - 0.3 * jelly * np.array([c, t]) + side * 0.35 * jelly * np.array([-t, c])
        organs.append((TISSUE["cord_vessel"], Blob(*at, artery, artery)))
    return organs


def _cord_size(rng: np.random.Generator, a: float, b: float) -> tuple[float, float]:
    """Radii (mm) of the cord's jelly and of its vein (as wide as the intrahepatic vein)."""
    s = math.sqrt(a * b) / 40
    return rng.uniform(4.5, 6.5) * s, rng.uniform(1.5, 2.3) * s


def _cord_loop(rng: np.random.Generator, a: float, b: float) -> list:
    """A free loop of cord floating in the fluid near the abdomen, cut along or across."""
    jelly, vein = _cord_size(rng, a, b)
    if rng.random() < 0.4:
        center, _ = _beside(rng, a, b, (1, 15), jelly)
        return _cord_across(center, jelly, vein, rng.uniform(0, 2 * math.pi))
    start, phi = _beside(rng, a, b, (1, 15), jelly)
    direction = phi + math.pi / 2 + rng.uniform(-0.6, 0.6)  # roughly along the skin line
    return _cord_along(start, direction, rng.uniform(8, 14) * jelly, rng.uniform(-2, 2) * jelly, jelly,
                       vein, rng.uniform(1, 3), rng.uniform(0, 2 * math.pi))


def _limb(rng: np.random.Generator, a: float, b: float) -> list:
    """An arm or leg beside the abdomen: soft tissue round a bone, cut across or along."""
    radius = rng.uniform(0.15, 0.25) * math.sqrt(a * b)
    bone = rng.uniform(0.25, 0.35) * radius  # the shaft of a humerus or femur
    center, phi = _beside(rng, a, b, (1, 8), radius)
    if rng.random() < 0.7:  # a transverse abdominal plane mostly cuts the limbs across
        angle = rng.uniform(0, 180)
        return [(TISSUE["limb"], Blob(*center, radius, radius * rng.uniform(0.75, 1.0), angle)),
                (TISSUE["limb_bone"], Blob(*(center + rng.uniform(-0.2, 0.2, 2) * radius), bone, bone))]
    direction = phi + math.pi / 2 + rng.uniform(-0.5, 0.5)
    half = rng.uniform(1.2, 2.0) * radius * np.array([math.cos(direction), math.sin(direction)])
    ends = tuple(map(tuple, (center - half, center + half)))
    bone_ends = tuple(map(tuple, (center - 0.8 * half, center + 0.8 * half)))
    return [(TISSUE["limb"], Tube(ends, radius)), (TISSUE["limb_bone"], Tube(bone_ends, bone))]


def draw_fluid_distractors(rng: np.random.Generator, a: float, b: float, ranges: AnatomyRanges) -> list:
    """Look-alikes in the amniotic fluid around the abdomen (fetal frame, mm), painting order."""
    objects = []
    if rng.random() < ranges.cord_loop_share:
        for _ in range(rng.integers(1, ranges.cord_loops_max + 1)):
            objects += _cord_loop(rng, a, b)
    if rng.random() < ranges.limb_share:
        objects += _limb(rng, a, b)
    return objects


def _cord_insertion(rng: np.random.Generator, a: float, b: float) -> tuple[list, list]:
    """The umbilical cord entering the anterior wall: the vein's first stretch inside the body
    (labelled vein: it touches the skin line) and the cord outside it, in the fluid."""
    jelly, vein = _cord_size(rng, a, b)
    u = a * rng.uniform(-0.1, 0.1)
    inside = (TISSUE["umbilical_vein"], Tube(((u, 1.05 * b), (u + a * rng.uniform(-0.08, 0.08),
                                                              b * rng.uniform(0.6, 0.75))), vein))
    start = np.array([u, b - jelly])
    direction = math.pi / 2 + rng.uniform(-0.5, 0.5)
    outside = _cord_along(start, direction, rng.uniform(6, 10) * jelly, rng.uniform(-2, 2) * jelly, jelly,
                          vein, rng.uniform(1, 3), rng.uniform(0, 2 * math.pi))
    return [inside], outside


def _elongate(rng: np.random.Generator, a: float, b: float, ratio: tuple[float, float]) -> tuple[float, float]:
    """An oblique section: the same perimeter, its axis ratio drawn from ``ratio``."""
    major, minor = max(a, b), min(a, b)
    r = rng.uniform(*ratio)
    major = ellipse_perimeter(major, minor) / ellipse_perimeter(1.0, r)
    return (major, major * r) if a >= b else (major * r, major)


def draw_echo_scale(rng: np.random.Generator, jitter_db: tuple[float, float],
                    jittered: np.ndarray = JITTERED) -> np.ndarray:
    """Per tissue id, the case's echogenicity factor: ``jittered`` tissues (those of the
    abdomen unless told) up or down by a magnitude in ``jitter_db`` (dB), the others 1."""
    scale = np.ones(len(TISSUES), np.float32)
    db = rng.uniform(*jitter_db, jittered.size) * rng.choice([-1.0, 1.0], jittered.size)
    scale[jittered] = 10 ** (db / 20)
    return scale


def draw_scene(rng: np.random.Generator, shape: tuple[int, int] = (256, 256),
               probe: str = "convex", unacceptable_share: float = 0.3,
               ranges: AnatomyRanges = TRAINING.anatomy) -> Scene:
    """Draw the anatomy, probe and plane of one case (see the module docstring).

    ``ranges`` sets what varies (:class:`AnatomyRanges`); an unfit plane (probability
    ``unacceptable_share``) is one of ``ranges.unfit_kinds``, equally likely.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {PROBES}")
    unknown = sorted(set(ranges.unfit_kinds) - set(UNFIT))
    if unknown or not ranges.unfit_kinds:
        raise ValueError(f"unknown unfit-plane kinds {unknown}; choose from {sorted(UNFIT)}")
    child = rng.spawn(1)[0]  # new random numbers: the first round's stream stays as it was
    if probe == "mixed":
        probe = "convex" if rng.random() < CONVEX_SHARE_MIXED else "linear"
    age, a, b = _draw_size(rng)
    kinds = ranges.unfit_kinds
    reason = UNFIT[kinds[rng.integers(len(kinds))]] if rng.random() < unacceptable_share else ACCEPTABLE
    if reason == OBLIQUE:
        a, b = _elongate(child, a, b, ranges.oblique_ratio)
    organs = draw_organs(rng, a, b, reason)
    outside = draw_fluid_distractors(child, a, b, ranges)
    organs = organs[:1] + tuple(draw_inner_distractors(child, a, b, ranges, reason)) + organs[1:]
    if reason == CORD_INSERTION:
        vein, cord = _cord_insertion(child, a, b)
        organs, outside = organs + tuple(vein), cord + outside
    return Scene(**probe_and_layers(rng, shape, probe, ranges, a, b),
                 semi_axes=(a, b), angle=rng.uniform(0, 360), mirrored=bool(rng.random() < 0.5),
                 organs=organs, gestational_age_weeks=age, plane_reason=reason, outside=tuple(outside),
                 echo_scale=draw_echo_scale(child, ranges.echo_jitter_db))


# --------------------------------------------------------------------------- anatomy -> tissue ids

def layer_tissue(scene: Scene, face_depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Layer tissue ids at a depth below the face (mm) and lateral position (0..1), broadcast."""
    index = np.zeros(np.broadcast_shapes(face_depth.shape, lateral.shape), np.intp)
    previous = -np.inf
    for boundary in scene.boundaries:  # evaluated on `lateral` alone: one row for a beam grid
        depth = np.maximum(boundary.at(lateral), previous + MIN_LAYER_MM)  # layers never cross
        index += face_depth >= depth
        previous = depth
    return np.asarray(scene.layers, np.uint8)[index]


def paint_fetus(scene: Scene, tissue: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Paint the fetal abdomen over layer tissue ids at image coordinates ``x``, ``y`` (px),
    and the scene's objects in the fluid (:attr:`Scene.outside`) over the amniotic fluid."""
    c, s = math.cos(math.radians(scene.angle)), math.sin(math.radians(scene.angle))
    dx, dy = (x - scene.center[0]) * scene.spacing_mm, (y - scene.center[1]) * scene.spacing_mm
    u, v = (dx * c + dy * s) * (-1 if scene.mirrored else 1), dy * c - dx * s
    a, b = scene.semi_axes
    body = (u / a) ** 2 + (v / b) ** 2 <= 1
    if scene.outside:  # floating in the fluid: held back by the uterine wall
        fluid = ~body & (tissue == TISSUE["amniotic_fluid"])
        uf, vf, outer = u[fluid], v[fluid], tissue[fluid]
        for tissue_id, shape in scene.outside:
            outer[shape.contains(uf, vf)] = tissue_id
        tissue[fluid] = outer
    u, v = u[body], v[body]  # organs only need the points inside the skin line
    inner = np.full(u.shape, scene.interior, np.uint8)
    for tissue_id, shape in scene.organs:
        inner[shape.contains(u, v)] = tissue_id
    tissue[body] = inner
    return tissue


def normalised_lateral(g: geom.Geometry, lateral: np.ndarray) -> np.ndarray:
    lo, hi = geom.lateral_range(g)
    return (lateral - lo) / (hi - lo)


def tissue_at(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Tissue ids (indices into :data:`TISSUES`) at image coordinates ``x``, ``y`` (px)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    g = scene.geometry
    depth, lateral = geom.image_to_beam(g, x, y)
    face_depth = (depth - g.start_depth) * scene.spacing_mm
    tissue = layer_tissue(scene, face_depth, normalised_lateral(g, lateral))
    return paint_fetus(scene, tissue, x, y)


def abdomen_ellipse(scene: Scene) -> Ellipse:
    """The skin-line ellipse in pixels, as :class:`fetal_biometry.measure.ellipse.Ellipse` (a >= b)."""
    a, b = (axis / scene.spacing_mm for axis in scene.semi_axes)
    if a >= b:
        return Ellipse(*scene.center, a, b, scene.angle % 180)
    return Ellipse(*scene.center, b, a, (scene.angle + 90) % 180)
