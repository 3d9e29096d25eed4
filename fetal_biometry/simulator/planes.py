"""Head and femur planes: their anatomy and exact measurements, beside the abdomen's.

A head or femur case shares everything but the fetus with an abdomen case: the maternal and
uterine layers, the probe and its placement, the fluid distractors (cord loops, limbs), the
echogenicity jitter and the physics (:mod:`~fetal_biometry.simulator.physics`), all drawn
from the same :class:`~fetal_biometry.simulator.appearance.AnatomyRanges`. Its
:class:`~fetal_biometry.simulator.anatomy.Scene` is painted by the same code: the body
ellipse (scalp, thigh) filled with its :attr:`~.anatomy.Scene.interior` (brain, thigh soft
tissue), the structures painted over it in order. Anatomy is in mm in the fetal frame: for the
head ``u`` runs occiput -> forehead and ``v`` across the parietal bones; for the femur ``u``
runs along the shaft.

**Head, transthalamic plane** (where HC and BPD are measured, ISUOG 2019): sizes from the
INTERGROWTH-21st standards at an age drawn from 14-40 weeks (HC at a z-score within
+-2.5, cephalic index BPD/OFD 0.74-0.86); the skull a bone ring whose *outer* border is an
exact ellipse (the HC) and whose thickness (about 1 mm at 14 weeks, 2.6 at 40) varies around
it, cut by two sutures; the scalp outside it; inside the brain (hypoechoic), the midline echo
(falx) interrupted by the cavum septi pellucidi (a fluid box in the anterior third) and the two
thalami. The skull dims the brain behind it, shadows where the beam runs along it and
reverberates (:data:`~fetal_biometry.simulator.physics.BONE_REVERB_MM`).
Unfit head planes (:data:`HEAD_UNFIT`): transcerebellar (cerebellum and cisterna magna in
view, no thalami) and oblique (midline tilted and off centre, thalami unequal, the section
elongated: cephalic index 0.62-0.72).

**Femur** (FL along the ossified diaphysis, end to end): FL from the INTERGROWTH-21st standard;
the diaphysis a bright bar with blunt ends (bone: a full acoustic shadow behind it), the
unossified cartilage ends hypoechoic, inside the thigh's soft tissue, held within 25 degrees of
perpendicular to the beam. Unfit (:data:`FEMUR_UNFIT`): foreshortened, the plane cutting the
shaft out of plane at 30-60 degrees: a shorter bone with tapering ends.

Truth (:class:`PlaneTruth`): HC, OFD, BPD outer-to-outer and outer-to-inner (near outer border
to the inner border of the far table, near and far along the beam) and FL in mm, exact
from the drawn shapes; the label map gives the classes skull, brain (with the cisterna
magna), midline, thalamus, cavum septi pellucidi, cerebellum and femur.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.measure import growth
from fetal_biometry.measure.ellipse import Ellipse, ellipse_perimeter
from fetal_biometry.simulator.anatomy import (CONVEX_SHARE_MIXED, EVERY_JITTERED, PROBES, Blob,
                                              Scene, Tube, draw_echo_scale, draw_fluid_distractors,
                                              turned)
from fetal_biometry.simulator.layout import probe_and_layers
from fetal_biometry.simulator.appearance import TRAINING, AnatomyRanges
from fetal_biometry.simulator.tissues import TISSUE

AGE_WEEKS = (14.0, 40.0)
MAX_Z = 2.5  # sizes drawn at z-scores within +-2.5 of the INTERGROWTH-21st mean

HEAD_ACCEPTABLE = "transthalamic plane: thalami and cavum septi pellucidi in view, midline centred"
TRANSCEREBELLAR = ("transcerebellar plane: cerebellum in view, not the thalami "
                   "(HC and BPD are measured in the transthalamic plane)")
OBLIQUE_HEAD = "oblique head plane: midline tilted off the long axis, thalami unequal"
FEMUR_ACCEPTABLE = "femur along its length: both blunt ends of the ossified diaphysis in view"
FORESHORTENED = "foreshortened femur: the plane cuts the shaft obliquely, its ends taper"
HEAD_UNFIT = {"transcerebellar": TRANSCEREBELLAR, "oblique": OBLIQUE_HEAD}
FEMUR_UNFIT = {"foreshortened": FORESHORTENED}


# --------------------------------------------------------------------------- shapes (mm)

@dataclasses.dataclass(frozen=True)
class Skull:
    """A bone ring whose outer border is the ellipse (a, b) and whose thickness varies around it.

    At polar angle ``psi`` (of the normalised coordinates ``(u/a, v/b)``), the inner border lies
    on the ellipse ``(a - t, b - t)`` with ``t = thickness * (1 + wobble(psi))``; ``gaps`` are
    sutures, ``(psi, half width)`` in degrees, where there is no bone.
    """

    a: float
    b: float
    thickness: float
    wobble: tuple[tuple[int, float, float], ...]  # (harmonic, relative amplitude, phase rad)
    gaps: tuple[tuple[float, float], ...] = ()

    def thickness_at(self, psi: np.ndarray) -> np.ndarray:
        t = np.ones_like(np.asarray(psi, float))
        for k, amplitude, phase in self.wobble:
            t = t + amplitude * np.cos(k * psi - phase)
        return self.thickness * t

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        psi = np.arctan2(v / self.b, u / self.a)
        t = self.thickness_at(psi)
        inside_outer = np.hypot(u / self.a, v / self.b) <= 1
        outside_inner = np.hypot(u / (self.a - t), v / (self.b - t)) > 1
        bone = inside_outer & outside_inner
        for centre, half in self.gaps:
            offset = (np.degrees(psi) - centre + 180) % 360 - 180
            bone &= np.abs(offset) > half
        return bone


@dataclasses.dataclass(frozen=True)
class Outside:
    """Everything outside the ellipse (a, b): the scalp around the skull, inside the body."""

    a: float
    b: float

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.hypot(u / self.a, v / self.b) > 1


@dataclasses.dataclass(frozen=True)
class Bar:
    """A rectangle centred at (u, v), ``half_length`` along ``angle`` (degrees from +u)."""

    u: float
    v: float
    half_length: float
    half_width: float
    angle: float = 0.0

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        along, across = turned(u, v, self.u, self.v, self.angle)
        return (np.abs(along) <= self.half_length) & (np.abs(across) <= self.half_width)


@dataclasses.dataclass(frozen=True)
class PlaneTruth:
    """The exact measurements of a head or femur plane.

    ``measurements`` uses :data:`fetal_biometry.measure.growth.MEASUREMENTS` keys (mm); ``ellipse`` is
    the skull's outer ellipse in pixels (None for a femur); ``ends`` the femur's two ends in
    pixels (x, y) (None for a head).
    """

    structure: str
    measurements: dict
    ellipse: Ellipse | None = None
    ends: tuple[tuple[float, float], tuple[float, float]] | None = None


# --------------------------------------------------------------------------- drawing

def _size(rng: np.random.Generator, measurement: str) -> tuple[float, float]:
    """An age (weeks) and a size (mm) at a z-score within +-:data:`MAX_Z` of its standard."""
    age = rng.uniform(*AGE_WEEKS)
    mean, sd = growth.mean_sd(measurement, age)
    return age, mean + float(np.clip(rng.normal(), -MAX_Z, MAX_Z)) * sd


def _reason(rng: np.random.Generator, unfit: dict, unacceptable_share: float, acceptable: str) -> str:
    if rng.random() < unacceptable_share:
        kinds = sorted(unfit)
        return unfit[kinds[rng.integers(len(kinds))]]
    return acceptable


def _head_organs(rng: np.random.Generator, skull: Skull, reason: str) -> list:
    """Scalp, brain structures and skull (painted last: it wins), in the fetal frame (mm)."""
    ai, bi = skull.a - skull.thickness, skull.b - skull.thickness
    falx = rng.uniform(0.35, 0.5)  # its half-thickness, mm
    organs: list = [(TISSUE["scalp"], Outside(skull.a, skull.b))]
    tilt, shift = 0.0, 0.0
    if reason == OBLIQUE_HEAD:
        tilt = math.radians(rng.uniform(12, 25) * rng.choice([-1, 1]))
        shift = rng.uniform(0.08, 0.18) * bi * rng.choice([-1, 1])

    def on_midline(t: float, off: float = 0.0) -> tuple[float, float]:
        """The point at t (fraction of ai, + forehead) along the midline, ``off`` across it."""
        return (t * ai * math.cos(tilt) - off * math.sin(tilt),
                shift + t * ai * math.sin(tilt) + off * math.cos(tilt))

    organs.append((TISSUE["falx"], Tube((on_midline(0.97), on_midline(0.45)), falx)))
    csp_at = on_midline(rng.uniform(0.3, 0.38))
    organs.append((TISSUE["cavum"], Blob(*csp_at, ai * rng.uniform(0.06, 0.08),
                                         bi * rng.uniform(0.04, 0.06), math.degrees(tilt))))
    if reason == TRANSCEREBELLAR:
        organs.append((TISSUE["falx"], Tube((on_midline(-0.82), on_midline(-0.97)), falx)))
        organs.append((TISSUE["cisterna_magna"], Blob(*on_midline(-0.74), ai * rng.uniform(0.07, 0.1),
                                                       bi * rng.uniform(0.13, 0.17))))
        for side in (1, -1):
            organs.append((TISSUE["cerebellum"], Blob(*on_midline(-0.55, side * 0.12 * bi),
                                                      ai * rng.uniform(0.09, 0.11),
                                                      bi * rng.uniform(0.11, 0.13), side * 15)))
        organs.append((TISSUE["cerebellum"], Blob(*on_midline(-0.57), ai * 0.08, bi * 0.045)))
        return organs + [(TISSUE["skull"], skull)]
    organs.append((TISSUE["falx"], Tube((on_midline(-0.25), on_midline(-0.97)), falx)))
    size = rng.uniform(0.9, 1.1)
    for side in (1, -1):
        unequal = rng.uniform(0.6, 0.8) if reason == OBLIQUE_HEAD and side > 0 else 1.0
        organs.append((TISSUE["thalamus"], Blob(*on_midline(rng.uniform(-0.06, 0.02), side * 0.13 * bi),
                                                ai * 0.15 * size * unequal, bi * 0.11 * size * unequal,
                                                side * rng.uniform(15, 30) + math.degrees(tilt))))
    return organs + [(TISSUE["skull"], skull)]


def _skull(rng: np.random.Generator, age: float, hc: float, ratio: float) -> Skull:
    a = hc / ellipse_perimeter(1.0, ratio)
    thickness = rng.uniform(0.85, 1.15) * (0.95 + 0.065 * (age - AGE_WEEKS[0]))
    wobble = ((2, rng.uniform(0.0, 0.3), rng.uniform(0, 2 * math.pi)),
              (3, rng.uniform(0.0, 0.15), rng.uniform(0, 2 * math.pi)))
    coronal = rng.uniform(35, 60)  # the coronal sutures, either side of the forehead
    gaps = tuple((side * coronal, rng.uniform(1.0, 2.5)) for side in (1, -1))
    return Skull(a, a * ratio, thickness, wobble, gaps)


def _to_image(scene: Scene, u: float, v: float) -> tuple[float, float]:
    """Fetal-frame point (mm) -> image coordinates (px): the inverse of the painting transform."""
    c, s = math.cos(math.radians(scene.angle)), math.sin(math.radians(scene.angle))
    u = -u if scene.mirrored else u
    return (scene.center[0] + (u * c - v * s) / scene.spacing_mm,
            scene.center[1] + (u * s + v * c) / scene.spacing_mm)


def _probe_kind(rng: np.random.Generator, probe: str) -> str:
    """``probe``, or for 'mixed' convex two times in three, as the abdomen draws it."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {PROBES}")
    if probe == "mixed":
        return "convex" if rng.random() < CONVEX_SHARE_MIXED else "linear"
    return probe


def draw_head(rng: np.random.Generator, shape: tuple[int, int] = (256, 256), probe: str = "convex",
              unacceptable_share: float = 0.3,
              ranges: AnatomyRanges = TRAINING.anatomy) -> tuple[Scene, PlaneTruth]:
    """Draw a head plane (see the module docstring) and its exact measurements."""
    child = rng.spawn(1)[0]
    probe = _probe_kind(rng, probe)
    age, hc = _size(rng, growth.HC)
    reason = _reason(rng, HEAD_UNFIT, unacceptable_share, HEAD_ACCEPTABLE)
    ratio = rng.uniform(0.62, 0.72) if reason == OBLIQUE_HEAD else rng.uniform(0.74, 0.86)
    skull = _skull(rng, age, hc, ratio)
    scalp = rng.uniform(1.0, 2.0) + 0.06 * (age - AGE_WEEKS[0])
    a, b = skull.a + scalp, skull.b + scalp
    organs = _head_organs(rng, skull, reason)
    scene = Scene(**probe_and_layers(rng, shape, probe, ranges, a, b), semi_axes=(a, b),
                  angle=rng.uniform(0, 360), mirrored=bool(rng.random() < 0.5), organs=tuple(organs),
                  gestational_age_weeks=age, plane_reason=reason,
                  outside=tuple(draw_fluid_distractors(child, a, b, ranges)),
                  echo_scale=draw_echo_scale(child, ranges.echo_jitter_db, EVERY_JITTERED),
                  interior=TISSUE["brain"])
    return scene, head_truth(scene, skull)


def head_truth(scene: Scene, skull: Skull) -> PlaneTruth:
    """HC, OFD, BPD outer-to-outer and outer-to-inner of a head scene's skull."""
    ends = [(_to_image(scene, 0.0, side * skull.b), side) for side in (1, -1)]
    depths = [float(geom.image_to_beam(scene.geometry, np.float64(x), np.float64(y))[0])
              for (x, y), _ in ends]
    far_side = ends[int(np.argmax(depths))][1]  # the parietal table further along the beam
    far_thickness = float(skull.thickness_at(np.array(far_side * math.pi / 2)))
    measurements = {growth.HC: ellipse_perimeter(skull.a, skull.b), growth.OFD: 2 * skull.a,
                    growth.BPD_OO: 2 * skull.b, growth.BPD_OI: 2 * skull.b - far_thickness}
    ellipse = Ellipse(*scene.center, skull.a / scene.spacing_mm, skull.b / scene.spacing_mm,
                      scene.angle % 180)
    return PlaneTruth("head", measurements, ellipse=ellipse)


def draw_femur(rng: np.random.Generator, shape: tuple[int, int] = (256, 256), probe: str = "convex",
               unacceptable_share: float = 0.3,
               ranges: AnatomyRanges = TRAINING.anatomy) -> tuple[Scene, PlaneTruth]:
    """Draw a femur plane (see the module docstring) and its exact femur length."""
    child = rng.spawn(1)[0]
    probe = _probe_kind(rng, probe)
    age, fl = _size(rng, growth.FL)
    reason = _reason(rng, FEMUR_UNFIT, unacceptable_share, FEMUR_ACCEPTABLE)
    half_width = fl * rng.uniform(0.035, 0.05) + 0.3
    cartilage = fl * rng.uniform(0.1, 0.14)
    if reason == FORESHORTENED:  # out of plane: a shorter, tapering section of the shaft
        seen = fl * math.cos(math.radians(rng.uniform(30, 60)))
        bone = Blob(0.0, 0.0, seen / 2, half_width * 1.1)
        cartilage *= 0.5
    else:
        seen = fl
        bone = Bar(0.0, 0.0, fl / 2, half_width)
    a = seen / 2 + cartilage * 1.6 + rng.uniform(2, 5)
    b = fl * rng.uniform(0.2, 0.28) + 2.0  # the thigh's soft tissue
    organs = [(TISSUE["cartilage"], Blob(side * (seen / 2 + 0.7 * cartilage), 0.0, cartilage,
                                         half_width * rng.uniform(1.6, 2.2))) for side in (1, -1)]
    organs.append((TISSUE["femur"], bone))
    layout = probe_and_layers(rng, shape, probe, ranges, a, b)
    # Held within 25 degrees of perpendicular to the beam, as ISUOG asks for a femur length.
    lateral = geom.image_to_beam(layout["geometry"], *map(np.float64, layout["center"]))[1]
    beam = float(lateral) if isinstance(layout["geometry"], geom.ConvexProbe) else \
        float(layout["geometry"].angle)
    angle = (-beam + rng.uniform(-25, 25) + (180 if rng.random() < 0.5 else 0)) % 360
    scene = Scene(**layout, semi_axes=(a, b), angle=angle, mirrored=bool(rng.random() < 0.5),
                  organs=tuple(organs), gestational_age_weeks=age, plane_reason=reason,
                  outside=tuple(draw_fluid_distractors(child, a, b, ranges)),
                  echo_scale=draw_echo_scale(child, ranges.echo_jitter_db, EVERY_JITTERED),
                  interior=TISSUE["limb"])
    ends = (_to_image(scene, -seen / 2, 0.0), _to_image(scene, seen / 2, 0.0))
    return scene, PlaneTruth("femur", {growth.FL: fl}, ends=ends)
