"""Whole simulated cases: the beam grid of a scene, its physics, display and ground truth."""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from fetal_biometry import __version__
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset
from fetal_biometry.labels import OUTSIDE, SHADOW, STOMACH, VEIN
from fetal_biometry.measure.ellipse import ellipse_perimeter
from fetal_biometry.simulator import physics, planes
from fetal_biometry.simulator.anatomy import (ACCEPTABLE, Scene, abdomen_ellipse, draw_scene,
                                              layer_tissue, normalised_lateral, paint_fetus,
                                              tissue_at)
from fetal_biometry.simulator.appearance import Appearance, NARROW, PhysicsRanges, TRAINING
from fetal_biometry.simulator.tissues import BONE, LABEL, TISSUE

VISIBLE_SHARE = 0.5  # an acceptable plane must show half of its stomach and vein
MAX_ATTEMPTS = 8  # scenes drawn before an acceptable plane hidden in shadow is let through
#: Format constant: the generator name stored in dataset.json (and compared by the experiments).
#: Frozen: it names the module as it was when the format began, not where the code lives now.
GENERATOR = "fetal_biometry.simulator"
PHYSICS_STREAM = 1  # a case's physics settings come from default_rng([seed, index, PHYSICS_STREAM])
PLANE_STREAM = 2  # a 'mixed' case's plane kind comes from default_rng([seed, index, PLANE_STREAM])
PLANE_KINDS = ("abdomen", "head", "femur", "mixed")  # 'mixed': a third of each

TOOL = "simulate"  # the output marker of simulated datasets and sweeps (fetal_biometry.atomic.mark)


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
    shape = (math.ceil(physics.SAMPLES_PER_PIXEL * (g.end_depth - g.start_depth)) + 1,
             math.ceil(across / physics.BEAM_PITCH_PX) + 1)
    depth, lateral = geom.beam_samples(g, shape)
    face_depth = (depth - g.start_depth) * scene.spacing_mm
    tissue = layer_tissue(scene, face_depth[:, None], normalised_lateral(g, lateral)[None, :])
    tissue = paint_fetus(scene, tissue, *geom.beam_to_image(g, depth[:, None], lateral[None, :]))
    step = lateral[1] - lateral[0]
    pitch = depth * math.radians(step) if isinstance(g, geom.ConvexProbe) else np.full(shape[0], step)
    return BeamGrid(tissue, face_depth, pitch * scene.spacing_mm)


def ground_truth(scene: Scene, shape: tuple[int, int], grid: BeamGrid,
                 settings: physics.Settings = physics.FIRST_ROUND) -> tuple[np.ndarray, np.ndarray]:
    """Label map (dataset classes) and tissue ids on the pixel grid of ``shape``.

    Labels come from the anatomy at each pixel centre, then shadow from :func:`physics.shadow_mask`
    on ``grid`` with the case's physics ``settings`` (over everything but bone), then
    ``OUTSIDE`` (255) outside the fan.
    """
    g = scene.geometry
    y, x = np.indices(shape)
    tissue = tissue_at(scene, x, y)
    labels = LABEL[tissue]
    shadow = physics.shadow_mask(grid.tissue, grid.depth_mm, grid.pitch_mm, scene.frequency_mhz, settings)
    shadowed = geom.scan_convert(shadow.astype(np.uint8), g, shape, nearest=True).astype(bool)
    labels[shadowed & ~BONE[tissue]] = SHADOW
    labels[~geom.fan_mask(g, shape)] = OUTSIDE
    return labels, tissue


def hidden_reason(labels: np.ndarray, tissue: np.ndarray) -> str | None:
    """Why an acceptable plane's stomach or vein cannot be seen (shadow, fan), or None."""
    for name, label, what in (("stomach", STOMACH, "stomach bubble"),
                              ("umbilical_vein", VEIN, "umbilical vein")):
        drawn = np.count_nonzero(tissue == TISSUE[name])
        if np.count_nonzero(labels == label) < VISIBLE_SHARE * drawn:
            return f"{what} hidden in acoustic shadow"
    return None


def scan_image(scene: Scene, grid: BeamGrid, shape: tuple[int, int], rng: np.random.Generator,
               display: tuple[float, float] | None = None,
               ranges: PhysicsRanges = NARROW.physics,
               settings: physics.Settings = physics.FIRST_ROUND) -> np.ndarray:
    """The B-mode image (uint8) of a scene: physics on its beam grid with ``settings``
    (:func:`physics.draw_settings`), log compression with ``display`` (drawn here from
    ``ranges`` by :func:`physics.draw_display` when None), scan conversion into the fan."""
    envelope = physics.beam_envelope(grid.tissue, grid.depth_mm, grid.pitch_mm, scene.frequency_mhz,
                                     rng, physics.texture(rng, grid.tissue.shape) * scene.echo_scale[grid.tissue],
                                     settings)
    dynamic_range, top_db = physics.draw_display(rng, ranges) if display is None else display
    gray = physics.log_compress(envelope, dynamic_range, top_db)
    return np.rint(geom.scan_convert(gray, scene.geometry, shape)).astype(np.uint8)


def plane_kind(seed: int, index: int, plane: str) -> str:
    """The plane case ``index`` shows: ``plane``, or for 'mixed' one of abdomen, head, femur
    drawn from its own stream (so an abdomen case is the same in a mixed dataset)."""
    if plane not in PLANE_KINDS:
        raise ValueError(f"unknown plane {plane!r}; choose one of {PLANE_KINDS}")
    if plane != "mixed":
        return plane
    return PLANE_KINDS[int(np.random.default_rng([seed, index, PLANE_STREAM]).integers(3))]


def _landmarks_hidden(labels: np.ndarray, tissue: np.ndarray, names: tuple[str, ...]) -> str | None:
    """Why a head plane's landmarks cannot be seen (over half of one in shadow), or None."""
    for name in names:
        drawn = np.count_nonzero(tissue == TISSUE[name])
        if np.count_nonzero((tissue == TISSUE[name]) & (labels != SHADOW)) < VISIBLE_SHARE * drawn:
            return f"{name.replace('_', ' ')} hidden in acoustic shadow"
    return None


def simulate_plane(seed: int, index: int, kind: str, shape: tuple[int, int] = (256, 256),
                   probe: str = "convex", unacceptable_share: float = 0.3,
                   appearance: Appearance = TRAINING) -> dataset.Case:
    """A head or femur case (:mod:`.planes`): the same streams and physics as an abdomen's."""
    draw = {"head": planes.draw_head, "femur": planes.draw_femur}[kind]
    rng = np.random.default_rng([seed, index])
    settings = physics.draw_settings(appearance.physics, np.random.default_rng([seed, index, PHYSICS_STREAM]))
    for _ in range(MAX_ATTEMPTS):  # redraw transthalamic planes whose landmarks fall in shadow
        scene, truth = draw(rng, shape, probe, unacceptable_share, appearance.anatomy)
        grid = beam_grid(scene)
        labels, tissue = ground_truth(scene, shape, grid, settings)
        hidden = (_landmarks_hidden(labels, tissue, ("cavum", "thalamus"))
                  if scene.plane_reason == planes.HEAD_ACCEPTABLE else None)
        if hidden is None:
            break
    image = scan_image(scene, grid, shape, rng, ranges=appearance.physics, settings=settings)
    acceptable = hidden is None and scene.plane_reason in (planes.HEAD_ACCEPTABLE, planes.FEMUR_ACCEPTABLE)
    hc = truth.measurements.get("HC")
    return dataset.Case(
        name=f"sim{index:05d}", image=image, labels=labels, geometry=scene.geometry,
        spacing_mm=scene.spacing_mm,
        biometry=dataset.Biometry(
            ellipse=truth.ellipse, circumference_mm=hc, plane_acceptable=acceptable,
            plane_reason=hidden or scene.plane_reason,
            gestational_age_weeks=scene.gestational_age_weeks, structure=truth.structure,
            measurements=dict(truth.measurements)))


def simulate_case(seed: int, index: int, shape: tuple[int, int] = (256, 256),
                  probe: str = "convex", unacceptable_share: float = 0.3,
                  appearance: Appearance = TRAINING, plane: str = "abdomen") -> dataset.Case:
    """Simulate case ``index`` of the dataset with ``seed``: a scan with its ground truth.

    Parameters
    ----------
    seed, index : int
        Non-negative; the case's random numbers come from ``default_rng([seed, index])``
        (anatomy, scatterers, noise, display), its physics settings from
        ``default_rng([seed, index, PHYSICS_STREAM])``: drawn before the scene (the shadow
        labels need the beam width) without moving the main stream, so :data:`NARROW`
        reproduces the first round's cases byte for byte.
    shape : (H, W)
        Image size in pixels.
    probe : {'convex', 'linear', 'mixed'}
        Probe type; 'mixed' draws convex two times in three.
    unacceptable_share : float
        Probability that the plane is drawn unacceptable for AC.
    appearance : Appearance
        The ranges the case's appearance is drawn from (:mod:`.appearance`).
    plane : {'abdomen', 'head', 'femur', 'mixed'}
        What the scan shows (:func:`plane_kind`); head and femur planes come from
        :func:`simulate_plane`.

    Returns
    -------
    fetal_biometry.io.dataset.Case
        Named ``sim<index:05d>``.
    """
    kind = plane_kind(seed, index, plane)
    if kind != "abdomen":
        return simulate_plane(seed, index, kind, shape, probe, unacceptable_share, appearance)
    rng = np.random.default_rng([seed, index])
    settings = physics.draw_settings(appearance.physics, np.random.default_rng([seed, index, PHYSICS_STREAM]))
    for _ in range(MAX_ATTEMPTS):  # redraw acceptable planes whose landmarks fall in shadow
        scene = draw_scene(rng, shape, probe, unacceptable_share, appearance.anatomy)
        grid = beam_grid(scene)
        labels, tissue = ground_truth(scene, shape, grid, settings)
        hidden = hidden_reason(labels, tissue) if scene.plane_reason == ACCEPTABLE else None
        if hidden is None:
            break
    image = scan_image(scene, grid, shape, rng, ranges=appearance.physics, settings=settings)
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
             unacceptable_share: float = 0.3, appearance: Appearance = TRAINING,
             plane: str = "abdomen") -> Iterator[dataset.Case]:
    """Cases ``0 .. count-1`` of the dataset with ``seed`` (see :func:`simulate_case`)."""
    for index in range(count):
        yield simulate_case(seed, index, shape, probe, unacceptable_share, appearance, plane)


def write(out, count: int, seed: int = 0, shape: tuple[int, int] = (256, 256), probe: str = "convex",
          unacceptable_share: float = 0.3, progress=None, appearance: Appearance = TRAINING,
          plane: str = "abdomen") -> None:
    """Simulate ``count`` cases into a dataset folder at ``out`` (written aside, then renamed).

    ``progress`` wraps the case iterator (e.g. ``functools.partial(tqdm, total=count)``).
    """
    plane_kind(seed, 0, plane)  # an unknown plane is refused before anything is written
    cases = simulate(count, seed, shape, probe, unacceptable_share, appearance, plane)
    dataset.write_dataset(out, progress(cases) if progress else cases,
                          generator_record(seed, shape, probe, unacceptable_share, appearance, plane),
                          tool=TOOL)


def generator_record(seed: int, shape: tuple[int, int], probe: str, unacceptable_share: float,
                     appearance: Appearance = TRAINING, plane: str = "abdomen") -> dict:
    """The ``generator`` entry of a simulated dataset's dataset.json (``plane`` only when it is
    not the abdomen, so abdomen datasets are written as before)."""
    record = {"name": GENERATOR, "version": __version__, "seed": seed,
              "shape": list(shape), "probe": probe, "unacceptable_share": unacceptable_share,
              "appearance": appearance.to_dict()}
    return record if plane == "abdomen" else {**record, "plane": plane}
