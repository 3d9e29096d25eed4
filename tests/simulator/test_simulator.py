"""The B-mode simulator: speckle statistics, shadows along the beam, ground truth, determinism."""
from __future__ import annotations

import dataclasses
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from fetal_biometry import simulator
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset
from fetal_biometry.labels import (ABDOMEN, BACKGROUND, CLASSES, FLUID, OUTSIDE, RIB, SHADOW, SPINE,
                                   STOMACH, SWEEP_CLASSES, VEIN)
from fetal_biometry.measure.ellipse import ellipse_perimeter, ellipse_points, normalized_radius

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAYLEIGH = math.sqrt(math.pi / (4 - math.pi))  # mean / std of a Rayleigh variable: 1.913
BONE = (SPINE, RIB)


@pytest.fixture(scope="module")
def cases():
    """Simulated cases of both probe types (the 'mixed' draw gives both in this range).

    The first round's anatomy: the shadow checks below are calibrated on it (liver-gray
    tissue behind the bones); the wider anatomy meets the label checks in ``wide_cases``.
    """
    appearance = dataclasses.replace(simulator.TRAINING, anatomy=simulator.NARROW.anatomy)
    made = [simulator.simulate_case(5, i, (160, 160), "mixed", appearance=appearance) for i in range(8)]
    assert {type(c.geometry) for c in made} == {geom.ConvexProbe, geom.LinearProbe}
    return made


@pytest.fixture(scope="module")
def wide_cases():
    """Cases of the training and the foreign anatomy: distractors, unfit planes of all kinds."""
    return [simulator.simulate_case(6, i, (160, 160), "mixed", appearance=appearance)
            for appearance in (simulator.TRAINING, simulator.FOREIGN) for i in range(5)]


def _homogeneous_envelope(name: str, seed: int) -> np.ndarray:
    tissue = np.full((600, 400), simulator.TISSUE[name], np.uint8)
    depth = np.arange(600) * 0.3
    rng = np.random.default_rng(seed)
    envelope = simulator.beam_envelope(tissue, depth, np.full(600, 0.4), 3.5, rng)
    return envelope[50:-50, 50:-50]  # away from the filters' borders


def test_fully_developed_speckle_is_rayleigh():
    ratios = [e.mean() / e.std() for e in (_homogeneous_envelope("liver", s) for s in range(3))]
    print(f"liver envelope mean/std: {np.round(ratios, 3)} (Rayleigh: {RAYLEIGH:.3f})")
    assert np.mean(ratios) == pytest.approx(RAYLEIGH, abs=0.03)


def test_amniotic_fluid_is_anechoic():
    fluid, liver = _homogeneous_envelope("amniotic_fluid", 0), _homogeneous_envelope("liver", 0)
    assert fluid.mean() < 0.1 * liver.mean()  # more than 20 dB darker


def test_speckle_is_elongated_across_the_beam():
    envelope = _homogeneous_envelope("liver", 0)
    centred = envelope - envelope.mean()

    def correlation(axis: int, shift: int) -> float:
        return float((centred * np.roll(centred, shift, axis=axis)).mean() / centred.var())

    # 1.2 mm apart: 4 samples along the beam (0.3 mm each), 3 across it (0.4 mm each).
    assert correlation(1, 3) > 0.3 > 0.1 > correlation(0, 4)


def _behind(labels: np.ndarray, directions: np.ndarray, ys: np.ndarray, xs: np.ndarray,
            step: float) -> np.ndarray:
    """Labels ``step`` px further along the beam from pixels (ys, xs); 255 off the image."""
    d = directions[ys, xs]
    y = np.rint(ys + step * d[:, 1]).astype(int)
    x = np.rint(xs + step * d[:, 0]).astype(int)
    on = (y >= 0) & (y < labels.shape[0]) & (x >= 0) & (x < labels.shape[1])
    out = np.full(len(ys), OUTSIDE, np.uint8)
    out[on] = labels[y[on], x[on]]
    return out


def test_every_bone_casts_a_shadow_along_the_beam(cases):
    checked = 0
    for case in cases:
        directions = geom.beam_directions(case.geometry, case.labels.shape)
        components, count = ndimage.label(np.isin(case.labels, BONE), np.ones((3, 3)))
        for k in range(1, count + 1):
            ys, xs = np.nonzero(components == k)
            depth, lateral = geom.image_to_beam(case.geometry, xs, ys)
            if isinstance(case.geometry, geom.ConvexProbe):
                lateral = np.radians(lateral) * depth.mean()  # degrees -> px across the beams
            # The beam is about 3 px wide here; a narrower bone (a rib seen edge-on) only dims it.
            if np.ptp(lateral) < 5:
                continue
            central = np.abs(lateral - np.median(lateral)) <= 1  # the beams through the middle
            behind = np.concatenate([_behind(case.labels, directions, ys[central], xs[central], s)
                                     for s in (3, 4, 5)])
            behind = behind[~np.isin(behind, (*BONE, OUTSIDE))]
            if behind.size:  # none when the bone touches the end of the fan
                checked += 1
                assert np.mean(behind == SHADOW) > 0.6, (case.name, k)
    assert checked >= len(cases)


def test_shadow_lies_behind_bone_along_the_beam(cases):
    for case in cases:
        shadow = case.labels == SHADOW
        if not shadow.any():
            continue
        directions = geom.beam_directions(case.geometry, case.labels.shape)
        # The beam's lateral width lets a shadow spread a little beside its bone.
        near_bone = ndimage.binary_dilation(np.isin(case.labels, BONE), iterations=3)
        ys, xs = np.nonzero(shadow)
        found = np.zeros(len(ys), bool)
        for step in np.arange(0.5, 2 * max(case.labels.shape), 0.5):  # walk back towards the probe
            y = np.rint(ys - step * directions[ys, xs, 1]).astype(int)
            x = np.rint(xs - step * directions[ys, xs, 0]).astype(int)
            on = (y >= 0) & (y < shadow.shape[0]) & (x >= 0) & (x < shadow.shape[1])
            found[on] |= near_bone[y[on], x[on]]
        assert found.mean() > 0.99, case.name


def test_shadow_is_darker_than_the_tissue_it_hides(cases):
    for case in cases:
        inside = normalized_radius(case.biometry.ellipse, *np.indices(case.labels.shape)[::-1]) < 0.9
        shadowed = inside & (case.labels == SHADOW)
        if shadowed.sum() < 30:
            continue
        tissue = case.image[inside & (case.labels == ABDOMEN)]
        # 40 gray levels are 8-9 dB at the simulator's 50-60 dB dynamic range.
        assert np.median(tissue) - np.median(case.image[shadowed]) > 40, case.name


@pytest.mark.parametrize("which", ["cases", "wide_cases"])
def test_labels_agree_with_anatomy_and_geometry(which, request):
    known = set(CLASSES) | set(SWEEP_CLASSES) | {OUTSIDE}  # abdomen planes may cut kidneys or thorax
    for case in request.getfixturevalue(which):
        labels, bio = case.labels, case.biometry
        assert case.image.shape == labels.shape == (160, 160) and case.image.dtype == np.uint8
        assert set(np.unique(labels)) <= known
        fan = geom.fan_mask(case.geometry, labels.shape)
        np.testing.assert_array_equal(labels == OUTSIDE, ~fan)
        assert np.all(case.image[~fan] == 0)
        rho = normalized_radius(bio.ellipse, *np.indices(labels.shape)[::-1])
        inside = set(np.unique(labels[fan & (rho < 0.97)]))
        outside = set(np.unique(labels[fan & (rho > 1.03)]))
        assert inside <= {STOMACH, VEIN, SHADOW, ABDOMEN, *BONE, *SWEEP_CLASSES}
        assert outside <= {BACKGROUND, FLUID, SHADOW}
        assert FLUID in outside and ABDOMEN in inside
        # The whole abdomen lies in the fan: it can be measured.
        x, y = np.rint(ellipse_points(bio.ellipse)).astype(int).T
        assert np.all((x >= 0) & (x < 160) & (y >= 0) & (y < 160)) and fan[y, x].all()
        perimeter = ellipse_perimeter(bio.ellipse.a, bio.ellipse.b)
        assert bio.ac_mm == pytest.approx(perimeter * case.spacing_mm)
        assert 150 <= bio.ac_mm <= 380 and 20 <= bio.gestational_age_weeks <= 40
        assert geom.problems(case.geometry, labels.shape) == []


@pytest.mark.parametrize("which", ["cases", "wide_cases"])
def test_plane_verdict_matches_the_labels(which, request):
    for case in request.getfixturevalue(which):
        present = set(np.unique(case.labels))
        bio = case.biometry
        if bio.plane_acceptable:
            assert {STOMACH, VEIN} <= present
            assert bio.plane_reason == simulator.ACCEPTABLE
        else:
            assert bio.plane_reason in simulator.UNACCEPTABLE or "hidden" in bio.plane_reason
            if bio.plane_reason in (simulator.NO_STOMACH, simulator.RENAL_LEVEL, simulator.TOO_HIGH,
                                    simulator.CORD_INSERTION):
                assert STOMACH not in present
            if bio.plane_reason in (simulator.NO_VEIN, simulator.RENAL_LEVEL, simulator.TOO_HIGH):
                assert VEIN not in present


def test_scene_statistics():
    scenes = [simulator.draw_scene(np.random.default_rng([1, i]), (128, 128), "mixed")
              for i in range(300)]
    unacceptable = np.mean([s.plane_reason != simulator.ACCEPTABLE for s in scenes])
    assert unacceptable == pytest.approx(0.3, abs=0.08)
    assert {s.plane_reason for s in scenes} == {simulator.ACCEPTABLE, *simulator.UNACCEPTABLE}
    age = np.array([s.gestational_age_weeks for s in scenes])
    ac = np.array([ellipse_perimeter(*s.semi_axes) for s in scenes])
    assert 150 <= ac.min() and ac.max() <= 380 and 20 <= age.min() and age.max() <= 40
    assert np.corrcoef(age, ac)[0, 1] > 0.9
    assert np.all(np.abs(ac - [simulator.hadlock_ac_mm(a) for a in age]) < 0.25 * ac)
    none = [simulator.draw_scene(np.random.default_rng([1, i]), (128, 128), unacceptable_share=0)
            for i in range(20)]
    assert all(s.plane_reason == simulator.ACCEPTABLE for s in none)


def test_simulation_is_deterministic_and_cases_independent(tmp_path):
    shape = (96, 96)
    first = dataset.write_dataset(tmp_path / "a", simulator.simulate(3, 7, shape, "mixed"))
    second = dataset.write_dataset(tmp_path / "b", simulator.simulate(3, 7, shape, "mixed"))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 10
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    alone = simulator.simulate_case(7, 2, shape, "mixed")
    np.testing.assert_array_equal(alone.image, dataset.open(first).read("sim00002").image)
    other = simulator.simulate_case(8, 2, shape, "mixed")
    assert not np.array_equal(alone.image, other.image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown probe"):
        simulator.draw_scene(np.random.default_rng(0), probe="phased")


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "simulate.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_simulate_tool(tmp_path):
    out, sheet = tmp_path / "data", tmp_path / "sheet.png"
    run = _tool("--cases", "2", "--out", str(out), "--seed", "4", "--size", "96", "96",
                "--probe", "linear", "--contact-sheet", str(sheet))
    assert run.returncode == 0, run.stderr
    assert dataset.validate(out) == [] and sheet.stat().st_size > 0
    assert dataset.open(out).generator["seed"] == 4
    again = _tool("--cases", "2", "--out", str(out), "--seed", "4")
    assert again.returncode == 1 and "earlier output of this tool; pass --overwrite" in again.stderr
    replaced = _tool("--cases", "2", "--out", str(out), "--seed", "5", "--overwrite")
    assert replaced.returncode == 0 and dataset.open(out).generator["seed"] == 5
    assert _tool("--cases", "0", "--out", str(tmp_path / "x")).returncode == 2
    assert "--contact-sheet" in _tool("--help").stdout
