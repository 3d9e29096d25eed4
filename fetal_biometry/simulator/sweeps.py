"""Simulated sweeps: a caudo-cranial pass of the probe through one fetus, with per-frame truth.

A sweep is a cine loop of one case of :mod:`fetal_biometry.simulator`: the probe geometry, the
maternal layers, the fetus's size, placement and orientation are drawn once; then, frame after
frame, the imaging plane moves along the fetal body axis (the *level* ``z`` in mm, 0 at the
portal sinus, positive towards the head) while the hand tilts and shifts the probe a little.
What is cut at each level (the fetal frame of the simulator, sizes scaled with the abdomen,
``R = sqrt(a b)``):

=====================  ====================================================================
level                  in plane
=====================  ====================================================================
``z < -0.8 R``         pelvis: body wall, spine, no kidneys; the body narrows
``-0.75 R .. -0.3 R``  kidneys with their sinus (renal level)
``-0.8 R .. -0.1 R``   the umbilical vein as a dot at the anterior wall (from the cord
                       insertion, ``-0.55 R``, up to the liver): no landmark yet
``|z| <= 3 mm s``      the intrahepatic umbilical vein, J-shaped, at the portal sinus
``-0.25 R .. 0.35 R``  the stomach bubble, its section shrinking towards both ends
``-0.3 R .. 0.4 R``    liver with its hepatic and portal vessels; ribs above ``-0.25 R``
``z > 0.4 R``          thorax: lungs and heart (above the diaphragm)
=====================  ====================================================================

A tilt ``t`` of the plane about the fetal anterior axis stretches the section along ``u`` by
``1 / cos t`` (exactly: a tilted plane through a cylinder). Each frame is classed as the
ACOUSLIC-AI annotators class theirs:

- **optimal**: abdominal level, stomach bubble and the portal-sinus vein both in plane and
  visible (not lost in shadow), tilt at most :data:`MAX_OPTIMAL_TILT_DEG`, the abdomen
  wholly inside the fan;
- **suboptimal**: the abdomen (diaphragm to pelvis) wholly in the fan, but not optimal;
- **irrelevant**: thorax, pelvis, or an abdomen that leaves the fan.

On-disk layout (:func:`write_sweeps`; :func:`open_sweeps` and :func:`read_truth` read it)::

    SWEEPS/
      sweeps.json                 {"format": "fetal-biometry-sweeps", "version": 1,
                                   "sweeps": [names], "plane_values": {"0": "irrelevant",
                                   "1": "optimal", "2": "suboptimal"}, "generator": {...}}
      <name>/frames.mha           the loop: (frames, H, W) uint8, spacing in the header
                                  (x, y in mm, 1 per frame), as ACOUSLIC-AI's stacks
      <name>/masks.mha            abdomen masks, ACOUSLIC-AI style: 1 inside the skin line on
                                  optimal frames, 2 on suboptimal ones, 0 elsewhere
      <name>/labels.mha           dataset classes per frame (fetal_biometry.labels.CLASSES)
      <name>/truth.json           {"probe": {...}, "pixel_spacing_mm": s, "ac_mm": reference,
                                   "frames": [{"plane": "optimal", "reason": "...",
                                   "ac_mm": ..., "abdomen_ellipse": {...} or null,
                                   "level_mm": z, "tilt_deg": t}, ...]}

The reference ``ac_mm`` of a sweep is, like ACOUSLIC-AI's, taken from the best annotated
frames: the median AC of its optimal frames, else of its suboptimal frames, else null.
``truth.json`` is also a probe-geometry file for ``tools/sweep.py --geometry``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Callable, Iterable, Iterator

import numpy as np

from fetal_biometry import __version__, atomic, simulator as sim
from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.measure.ellipse import ellipse_mask, ellipse_perimeter, record as ellipse_record

FORMAT, VERSION = "fetal-biometry-sweeps", 1
#: Format constant: the generator name stored in dataset.json (and compared by the experiments).
#: Frozen: it names the module as it was when the format began, not where the code lives now.
GENERATOR = "fetal_biometry.simulator.sweeps"
INDEX = "sweeps.json"
PLANES = ("irrelevant", "optimal", "suboptimal")  # mask values 0, 1, 2
OPTIMAL, SUBOPTIMAL, IRRELEVANT = "optimal", "suboptimal", "irrelevant"
MAX_OPTIMAL_TILT_DEG = 12.0
MAX_TILT_DEG = 25.0
SWEEP_RANGE = (-1.0, 0.9)  # levels covered, in units of R
DIAPHRAGM, PELVIS = 0.4, -0.8  # abdominal levels lie between (units of R)
THORAX = "thorax"  # how the reason of a frame above the diaphragm begins
VEIN_HALF_MM = 3.0  # half the height of the portal-sinus segment, times the size scale s
FRAMES = 48
HOLD = 0.92  # how much of the last frame's tilt, shift and turn the next one keeps


@dataclasses.dataclass(frozen=True)
class _Scaled:
    """A fetal-frame shape seen on a section stretched by ``fu`` along u and ``fv`` along v."""

    shape: object
    fu: float
    fv: float

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.shape.contains(u / self.fu, v / self.fv)


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """The organs of one fetus at the portal sinus, from which every level is cut."""

    wall: tuple
    liver_vessels: tuple
    stomach: sim.anatomy.Blob
    vein: tuple
    kidneys: tuple
    aorta: tuple
    spine: tuple
    ribs: tuple
    a: float
    b: float

    @property
    def radius(self) -> float:
        return math.sqrt(self.a * self.b)


def _anatomy(rng: np.random.Generator, a: float, b: float) -> Anatomy:
    """Split the simulator's organs (portal-sinus and renal levels) into what levels keep."""
    organs = sim.anatomy.draw_organs(rng, a, b, sim.ACCEPTABLE)
    ids = [tissue for tissue, _ in organs]
    i_stomach, i_vein = ids.index(sim.TISSUE["stomach"]), ids.index(sim.TISSUE["umbilical_vein"])
    bones = organs[i_vein + 2:]
    renal = sim.anatomy.draw_organs(rng, a, b, sim.RENAL_LEVEL)
    kidneys = tuple(o for o in renal if o[0] in (sim.TISSUE["kidney"], sim.TISSUE["renal_sinus"]))
    return Anatomy(wall=organs[:1], liver_vessels=organs[1:i_stomach], stomach=organs[i_stomach][1],
                   vein=organs[i_vein:i_vein + 1], kidneys=kidneys, aorta=organs[i_vein + 1:i_vein + 2],
                   spine=tuple(o for o in bones if o[0] == sim.TISSUE["spine"]),
                   ribs=tuple(o for o in bones if o[0] == sim.TISSUE["rib"]), a=a, b=b)


def _profile(z: float, lo: float, hi: float) -> float:
    """Section size (0..1) of an organ spanning levels ``lo..hi``: an ellipsoid's profile."""
    if not lo < z < hi:
        return 0.0
    t = (2 * z - lo - hi) / (hi - lo)
    return math.sqrt(1 - t * t)


def organs_at(anatomy: Anatomy, z_mm: float) -> tuple[tuple, dict]:
    """Organs cut at level ``z_mm`` and what is in plane: {"stomach", "vein", "kidneys"}."""
    R, s = anatomy.radius, anatomy.radius / 40
    z = z_mm / R
    organs = list(anatomy.wall)
    kidneys = _profile(z, -0.75, -0.3)
    if kidneys > 0.3:
        organs += [(t, dataclasses.replace(shape, ru=shape.ru * kidneys, rv=shape.rv * kidneys))
                   for t, shape in anatomy.kidneys]
    if -0.3 < z < DIAPHRAGM:
        organs += anatomy.liver_vessels
    stomach = _profile(z, -0.25, 0.35)
    if stomach > 0.25:
        blob = anatomy.stomach
        organs.append((sim.TISSUE["stomach"], dataclasses.replace(blob, ru=blob.ru * stomach,
                                                                  rv=blob.rv * stomach)))
    sinus = abs(z_mm) <= VEIN_HALF_MM * s
    if sinus:
        organs += anatomy.vein
    elif -0.8 < z < -0.1:  # the vein on its way from the cord insertion up the anterior wall
        radius = anatomy.vein[0][1].radius
        organs.append((sim.TISSUE["umbilical_vein"], sim.anatomy.Blob(0.0, 0.8 * anatomy.b, radius, radius)))
    if z > DIAPHRAGM:
        organs += sim.anatomy.thorax(anatomy.a, anatomy.b, min(1.0, (z - DIAPHRAGM) / 0.3 + 0.4))
    organs += anatomy.aorta + anatomy.spine
    if z > -0.25:
        organs += anatomy.ribs
    return tuple(organs), {"stomach": stomach > 0.5, "vein": sinus, "kidneys": kidneys > 0.3}


def _body_scale(z: float) -> float:
    """Body section size relative to the portal-sinus level (z in units of R)."""
    if z < PELVIS:
        return 1 - 0.6 * (PELVIS - z)
    return 1.0 if z < DIAPHRAGM else 1 - 0.15 * (z - DIAPHRAGM)


@dataclasses.dataclass(frozen=True, eq=False)
class Sweep:
    """One simulated sweep: frames, dataset labels and ACOUSLIC-style masks (N, H, W) uint8."""

    name: str
    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    geometry: geom.Geometry
    spacing_mm: float
    truth: list[dict]

    @property
    def reference_ac_mm(self) -> float | None:
        """Median AC of the optimal frames, else of the suboptimal ones, else None."""
        for plane in (OPTIMAL, SUBOPTIMAL):
            acs = [f["ac_mm"] for f in self.truth if f["plane"] == plane]
            if acs:
                return float(np.median(acs))
        return None


def _classify(in_plane: dict, z: float, tilt: float, fits: bool, hidden: str | None) -> tuple[str, str]:
    """The frame's plane class and the reason, as an annotator would give them."""
    if z > DIAPHRAGM:
        return IRRELEVANT, f"{THORAX}: heart and lungs in plane"
    if z < PELVIS:
        return IRRELEVANT, "pelvis: below the kidneys"
    if not fits:
        return IRRELEVANT, "abdomen not wholly inside the fan"
    missing = [what for what, key in (("stomach bubble", "stomach"), ("umbilical vein at the "
               "portal sinus", "vein")) if not in_plane[key]]
    if missing:
        level = "renal level, " if in_plane["kidneys"] else ""
        return SUBOPTIMAL, level + " and ".join(missing) + " not in plane"
    if abs(tilt) > MAX_OPTIMAL_TILT_DEG:
        return SUBOPTIMAL, f"plane tilted {abs(tilt):.0f} deg (section not round)"
    if hidden:
        return SUBOPTIMAL, hidden
    return OPTIMAL, sim.ACCEPTABLE


def simulate_sweep(seed: int, index: int, frames: int = FRAMES, shape: tuple[int, int] = (256, 256),
                   probe: str = "convex", appearance: sim.Appearance | None = None) -> Sweep:
    """Sweep ``index`` of the set with ``seed`` (random numbers from ``default_rng([seed, index])``).

    ``appearance`` (a preset of :mod:`fetal_biometry.simulator.appearance`) draws the maternal
    layers, distractors outside the body, physics and display from its ranges, its physics
    settings from ``default_rng([seed, index, PHYSICS_STREAM])`` as a case's; None keeps the
    first round's single setting, so the sweeps made before presets existed stay byte for byte.
    """
    if frames < 2:
        raise ValueError(f"a sweep needs at least 2 frames, got {frames}")
    rng = np.random.default_rng([seed, index])
    if appearance is None:
        ranges, settings = sim.NARROW, sim.physics.FIRST_ROUND
    else:
        ranges = appearance
        settings = sim.physics.draw_settings(appearance.physics,
                                             np.random.default_rng([seed, index, sim.PHYSICS_STREAM]))
    # A sweep cuts its own anatomy (organs_at) through the base scene.
    base = sim.draw_scene(rng, shape, probe, unacceptable_share=0.0, ranges=ranges.anatomy)
    anatomy = _anatomy(rng, *base.semi_axes)
    # The sonographer's settings hold for the whole loop.
    display = sim.physics.draw_display(rng, ranges.physics)
    R = anatomy.radius
    start = R * (SWEEP_RANGE[0] + rng.uniform(-0.05, 0.05))
    step = R * (SWEEP_RANGE[1] - SWEEP_RANGE[0]) / (frames - 1)
    tilt, shift, turn = rng.uniform(-8, 8), np.zeros(2), 0.0
    images, labels, masks, truth = [], [], [], []
    for k in range(frames):
        z = start + k * step + rng.normal(0, 0.15 * step)  # an uneven hand
        # The hand wanders and comes back (mean-reverting walks): tilt about 6 deg, shifts
        # about 2 mm and turns about 2.5 deg (standard deviations).
        tilt = float(np.clip(HOLD * tilt + rng.normal(0, 2.4), -MAX_TILT_DEG, MAX_TILT_DEG))
        shift = HOLD * shift + rng.normal(0, 0.8, 2)  # mm
        turn = HOLD * turn + rng.normal(0, 1.0)
        organs, in_plane = organs_at(anatomy, z)
        f, stretch = _body_scale(z / R), 1 / math.cos(math.radians(tilt))
        scene = dataclasses.replace(
            base, center=(base.center[0] + shift[0] / base.spacing_mm, base.center[1] + shift[1] / base.spacing_mm),
            semi_axes=(base.semi_axes[0] * f * stretch, base.semi_axes[1] * f), angle=base.angle + turn,
            organs=tuple((t, _Scaled(o, f * stretch, f)) for t, o in organs))
        grid = sim.beam_grid(scene)
        label_map, tissue = sim.ground_truth(scene, shape, grid, settings)
        ellipse = sim.abdomen_ellipse(scene)
        fits = sim.layout.fits(scene.geometry, shape, scene.center, ellipse.a)
        hidden = sim.cases.hidden_reason(label_map, tissue) if in_plane["stomach"] and in_plane["vein"] else None
        plane, reason = _classify(in_plane, z / R, tilt, fits, hidden)
        images.append(sim.scan_image(scene, grid, shape, rng, display, ranges.physics, settings))
        labels.append(label_map)
        annotated = plane != IRRELEVANT
        mask = ellipse_mask(ellipse, shape) & (label_map != OUTSIDE) if annotated else None
        masks.append(np.zeros(shape, np.uint8) if mask is None
                     else mask.astype(np.uint8) * PLANES.index(plane))
        truth.append({"plane": plane, "reason": reason,
                      "ac_mm": ellipse_perimeter(ellipse.a, ellipse.b) * scene.spacing_mm if annotated else None,
                      "abdomen_ellipse": ellipse_record(ellipse) if annotated else None,
                      "level_mm": round(float(z), 3), "tilt_deg": round(tilt, 2)})
    return Sweep(f"sweep{index:05d}", np.stack(images), np.stack(labels), np.stack(masks),
                 base.geometry, base.spacing_mm, truth)


def simulate_sweeps(count: int, seed: int = 0, frames: int = FRAMES, shape: tuple[int, int] = (256, 256),
                    probe: str = "convex", appearance: sim.Appearance | None = None) -> Iterator[Sweep]:
    """Sweeps ``0 .. count-1`` of the set with ``seed``."""
    for index in range(count):
        yield simulate_sweep(seed, index, frames, shape, probe, appearance)


# --------------------------------------------------------------------------- on disk

def write_stack(path: pathlib.Path, stack: np.ndarray, spacing_mm: float) -> None:
    """A (frames, H, W) uint8 stack as a compressed MetaImage, spacing (s, s, 1)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(stack)
    image.SetSpacing((spacing_mm, spacing_mm, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


def truth_record(sweep: Sweep) -> dict:
    """The ``truth.json`` of a sweep."""
    return {"probe": geom.to_dict(sweep.geometry), "pixel_spacing_mm": sweep.spacing_mm,
            "ac_mm": sweep.reference_ac_mm, "frames": sweep.truth}


def write_sweeps(out: str | os.PathLike, sweeps: Iterable[Sweep], generator: dict | None = None) -> pathlib.Path:
    """Write ``sweeps`` in the layout of the module docstring at ``out``, aside then renamed."""
    out = pathlib.Path(out)
    with atomic.staged_dir(out) as tmp:
        atomic.mark(tmp, sim.TOOL)
        names = []
        for sweep in sweeps:
            folder = tmp / sweep.name
            folder.mkdir()
            for name, stack in (("frames", sweep.frames), ("masks", sweep.masks), ("labels", sweep.labels)):
                write_stack(folder / f"{name}.mha", stack, sweep.spacing_mm)
            (folder / "truth.json").write_text(json.dumps(truth_record(sweep), indent=1) + "\n")
            names.append(sweep.name)
        index = {"format": FORMAT, "version": VERSION, "sweeps": names,
                 "plane_values": {str(k): v for k, v in enumerate(PLANES)}, "generator": generator or {}}
        (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return out


def generator_record(seed: int, frames: int, shape: tuple[int, int], probe: str,
                     appearance: sim.Appearance | None = None) -> dict:
    """The ``generator`` entry of sweeps.json (``appearance`` only when a preset was asked)."""
    record = {"name": GENERATOR, "version": __version__, "seed": seed,
              "frames": frames, "shape": list(shape), "probe": probe}
    return record if appearance is None else {**record, "appearance": appearance.name}


def write(out, count: int, seed: int = 0, frames: int = FRAMES, shape: tuple[int, int] = (256, 256),
          probe: str = "convex", progress: Callable | None = None,
          appearance: sim.Appearance | None = None) -> pathlib.Path:
    """Simulate ``count`` sweeps into ``out`` (``progress`` wraps the sweep iterator)."""
    sweeps = simulate_sweeps(count, seed, frames, shape, probe, appearance)
    return write_sweeps(out, progress(sweeps) if progress else sweeps,
                        generator_record(seed, frames, shape, probe, appearance))


def is_sweeps(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of sweeps (holds sweeps.json)."""
    return (pathlib.Path(path) / INDEX).is_file()


def open_sweeps(path: str | os.PathLike) -> list[pathlib.Path]:
    """The sweep folders listed in ``path``/sweeps.json; ValueError naming what is wrong."""
    root = pathlib.Path(path)
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{root / INDEX}: not a sweeps index: {error}") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{root / INDEX}: format {index.get('format')!r} version "
                         f"{index.get('version')!r}; this reader knows {FORMAT!r} version {VERSION}")
    folders = [root / str(name) for name in index.get("sweeps", [])]
    missing = [f"{f.name}/{file}" for f in folders for file in ("frames.mha", "masks.mha", "truth.json")
               if not (f / file).is_file()]
    if missing:
        raise ValueError(f"{root}: missing {', '.join(missing)}")
    return folders


def read_truth(folder: str | os.PathLike) -> dict:
    """A sweep's truth.json."""
    path = pathlib.Path(folder) / "truth.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the sweep's truth: {error}") from None
