"""Where the fetus lies: the mother's layers above and below it (:class:`Boundary`), the probe
that sees it and its spacing, and where its centre falls in the fan (:func:`fits`); shared by
every plane the simulator draws (:func:`probe_and_layers`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.simulator.appearance import AnatomyRanges
from fetal_biometry.simulator.tissues import TISSUE

MIN_LAYER_MM = 0.5


@dataclasses.dataclass(frozen=True)
class Boundary:
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


def _wave(rng: np.random.Generator, depth: float, amplitude: float, tilt: float = 0.0) -> Boundary:
    return Boundary(depth, tilt, rng.uniform(0, amplitude), rng.uniform(0.3, 1.5),
                     rng.uniform(0, 2 * np.pi))


def _layers_above(rng: np.random.Generator,
                  ranges: AnatomyRanges) -> tuple[list[int], list[Boundary], float]:
    """Maternal wall, uterine wall and maybe placenta above the fluid; the fluid's deepest start."""
    layers = ["maternal_skin", "fat", "fascia", "muscle", "myometrium"]
    thickness = [1.5, rng.uniform(*ranges.fat_mm), rng.uniform(0.6, 1.0), rng.uniform(*ranges.muscle_mm),
                 rng.uniform(5, 10)]
    if rng.random() < ranges.anterior_placenta_share:
        layers.append("placenta")
        thickness.append(rng.uniform(*ranges.placenta_mm))
    layers.append("amniotic_fluid")
    maternal = _wave(rng, 0, 1.5)  # the maternal layers undulate together, parallel to the face
    uterine_tilt = rng.uniform(-8, 8)
    boundaries, depth = [], 0.0
    for k, step in enumerate(thickness):
        depth += step
        boundaries.append(dataclasses.replace(maternal, depth=depth) if k < 3
                          else _wave(rng, depth, 4, uterine_tilt))
    deepest = 0.0
    for boundary in boundaries:  # as layer_tissue enforces, layers never get thinner than MIN_LAYER_MM
        deepest = max(boundary.deepest, deepest + MIN_LAYER_MM)
    return [TISSUE[n] for n in layers], boundaries, deepest


def _layers_below(rng: np.random.Generator, fluid_end: float, placenta: bool,
                  placenta_mm: tuple[float, float]) -> tuple[list[int], list[Boundary]]:
    """Posterior placenta, uterine wall, maternal viscera below the fluid (from ``fluid_end`` on)."""
    tilt = rng.uniform(-8, 8)
    first = _wave(rng, 0, 4, tilt)
    depth = fluid_end + abs(tilt) / 2 + first.amplitude
    layers, boundaries = [], [dataclasses.replace(first, depth=depth)]
    steps = [("placenta", rng.uniform(*placenta_mm))] if placenta else []
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


def fits(g: geom.Geometry, shape: tuple[int, int], center: tuple[float, float], radius: float) -> bool:
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
        if fits(g, shape, (float(x), float(y)), radius_px):
            return float(x), float(y)
    x, y = geom.beam_to_image(g, g.start_depth + depth_px, (lo + hi) / 2)  # the widest place
    return float(x), float(y)


def probe_and_layers(rng: np.random.Generator, shape: tuple[int, int], probe: str,
                     ranges: AnatomyRanges, a: float, b: float) -> dict:
    """Layers, probe, spacing and centre for a body with semi-axes a, b (as the abdomen's)."""
    above, top, fluid_start = _layers_above(rng, ranges)
    # Depths along the beam; 1.04 covers a steered linear beam's longer path past the fetus.
    extent = max(a, b) * 1.04
    center_depth = fluid_start + rng.uniform(3, 20) + extent
    below, bottom = _layers_below(rng, center_depth + extent + rng.uniform(3, 25),
                                  TISSUE["placenta"] not in above
                                  and rng.random() < ranges.posterior_placenta_share, ranges.placenta_mm)
    depth_mm = center_depth + extent + rng.uniform(12, 45)
    g, spacing = _probe(rng, probe, shape, depth_mm, center_depth, extent)
    return dict(geometry=g, spacing_mm=spacing,
                frequency_mhz=float(np.clip(5.0 - 0.015 * (depth_mm - 80), 2.0, 5.0)),
                layers=tuple(above + below), boundaries=tuple(top + bottom),
                center=_place(rng, g, shape, center_depth / spacing, max(a, b) / spacing))
