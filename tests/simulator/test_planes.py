"""Simulated head and femur planes: exact truth, their classes, unfit planes, the abdomen unchanged."""
from __future__ import annotations

import dataclasses
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset
from fetal_biometry.labels import BRAIN, FEMUR, MIDLINE, OUTSIDE, SHADOW, SKULL, STOMACH, VEIN
from fetal_biometry.measure import growth
from fetal_biometry.measure.ellipse import ellipse_perimeter, normalized_radius
from fetal_biometry.simulator import cases, planes

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPE = (192, 192)


@pytest.fixture(scope="module")
def heads():
    return [cases.simulate_case(11, i, SHAPE, "mixed", 0.5, plane="head") for i in range(8)]


@pytest.fixture(scope="module")
def femurs():
    return [cases.simulate_case(12, i, SHAPE, "mixed", 0.5, plane="femur") for i in range(8)]


def test_mixed_planes_leave_the_abdomen_cases_as_they_were():
    kinds = [cases.plane_kind(3, i, "mixed") for i in range(12)]
    assert set(kinds) == {"abdomen", "head", "femur"}
    for i in [i for i, k in enumerate(kinds) if k == "abdomen"][:2]:
        mixed = cases.simulate_case(3, i, (96, 96), "mixed", plane="mixed")
        alone = cases.simulate_case(3, i, (96, 96), "mixed")
        assert np.array_equal(mixed.image, alone.image) and np.array_equal(mixed.labels, alone.labels)
    with pytest.raises(ValueError, match="unknown plane"):
        cases.plane_kind(0, 0, "knee")


def test_a_head_case_is_reproducible():
    a, b = (cases.simulate_case(11, 0, SHAPE, plane="head") for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)


def test_the_skull_outer_border_is_the_recorded_ellipse(heads):
    for case in heads:
        bio, e = case.biometry, case.biometry.ellipse
        y, x = np.nonzero(case.labels == SKULL)
        rho = normalized_radius(e, x, y)
        assert rho.max() <= 1 + 1e-9  # every skull pixel centre inside the outer border
        # ... and the skull reaches it: pixels within a pixel of the border all round
        assert np.count_nonzero(rho > 1 - 1.0 / e.b) > 0.5 * 2 * math.pi * math.sqrt(e.a * e.b)
        m = bio.measurements
        assert bio.circumference_mm == m["HC"] == pytest.approx(ellipse_perimeter(e.a, e.b) * case.spacing_mm)
        assert m["OFD"] == pytest.approx(2 * e.a * case.spacing_mm)
        assert m["BPD_OO"] == pytest.approx(2 * e.b * case.spacing_mm)
        assert m["BPD_OO"] - 5 < m["BPD_OI"] < m["BPD_OO"]  # minus one skull table, ~1-4 mm


def test_head_sizes_follow_the_growth_standard(heads):
    for case in heads:
        z = growth.zscore("HC", case.biometry.measurements["HC"], case.biometry.gestational_age_weeks)
        assert abs(z) <= planes.MAX_Z + 1e-9


def test_head_classes_and_reasons(heads):
    reasons = {c.biometry.plane_reason for c in heads}
    assert planes.HEAD_ACCEPTABLE in reasons and reasons & {planes.TRANSCEREBELLAR, planes.OBLIQUE_HEAD}
    for case in heads:
        present = set(np.unique(case.labels).tolist())
        assert {SKULL, BRAIN, MIDLINE} <= present and not present & {STOMACH, VEIN, FEMUR}
        assert case.biometry.plane_acceptable == (case.biometry.plane_reason == planes.HEAD_ACCEPTABLE)


def test_the_femur_label_spans_the_recorded_length(femurs):
    for case in femurs:
        y, x = np.nonzero(case.labels == FEMUR)
        xy = np.stack([x, y], axis=1).astype(float)
        axis = np.linalg.eigh(np.cov((xy - xy.mean(0)).T))[1][:, -1]
        extent = np.ptp(xy @ axis) * case.spacing_mm
        fl = case.biometry.measurements["FL"]
        if case.biometry.plane_acceptable:
            assert fl - 2 * case.spacing_mm <= extent <= fl
        else:  # foreshortened: the section is shorter than the femur
            assert case.biometry.plane_reason == planes.FORESHORTENED and extent < 0.9 * fl
        assert case.biometry.ellipse is None and case.biometry.structure == "femur"


def test_the_femur_shadows_what_lies_behind_it(femurs):
    case = femurs[0]
    directions = geom.beam_directions(case.geometry, case.labels.shape)
    y, x = np.nonzero(case.labels == FEMUR)
    d = directions[y, x]
    behind_y, behind_x = np.rint(y + 4 * d[:, 1]).astype(int), np.rint(x + 4 * d[:, 0]).astype(int)
    on = (behind_y < case.labels.shape[0]) & (behind_x < case.labels.shape[1])
    behind = case.labels[behind_y[on], behind_x[on]]
    assert np.mean(np.isin(behind, (SHADOW, FEMUR, OUTSIDE))) > 0.9


def test_head_and_femur_cases_round_trip_through_a_dataset(heads, femurs, tmp_path):
    femur = dataclasses.replace(femurs[0], name="femur0")
    root = dataset.write_dataset(tmp_path / "planes", [heads[0], femur])
    opened = dataset.open(root)
    assert opened.structures() == {"head", "femur"}
    assert dataset.validate(root) == []
    head = opened.read(heads[0].name)
    assert head.biometry.measurements == pytest.approx(heads[0].biometry.measurements)


def test_simulate_tool_writes_mixed_planes(tmp_path):
    out = tmp_path / "mixed"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "simulate.py"), "--cases", "6",
                          "--plane", "mixed", "--size", "96", "96", "--seed", "3", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    opened = dataset.open(out)
    assert opened.structures() == {"abdomen", "head", "femur"}
    assert opened.generator["plane"] == "mixed"


def test_heads_in_hc18_layout_import_back_to_their_hc(tmp_path):
    from fetal_biometry import importers
    from fetal_biometry.evaluation import metrics

    out = tmp_path / "hc18"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "simulate.py"), "--cases", "5", "--plane",
                          "head", "--layout", "hc18", "--seed", "4", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    again = subprocess.run([sys.executable, str(ROOT / "tools" / "simulate.py"), "--cases", "5", "--plane",
                            "head", "--layout", "hc18", "--seed", "4", "--out", str(out), "--overwrite"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # its own output, recognised by its marker
    imported, warnings = importers.import_dataset(
        "hc18", out / "training_set", tmp_path / "imported",
        importers.Options(spacing_csv=out / "training_set_pixel_size_and_HC.csv", geometry=out / "geometry"))
    assert warnings == []
    truth = [cases.simulate_case(4, i, (256, 256), plane="head").biometry.circumference_mm for i in range(5)]
    got = [c.biometry.circumference_mm for c in dataset.open(imported).iter_cases()]
    errors = metrics.hc_errors(got, truth)
    assert errors["n"] == 5 and errors["mean_absolute_difference_mm"] < 1.5  # the ring's own error
    assert errors["max_absolute_percent"] < 1.0
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "simulate.py"), "--cases", "2",
                          "--layout", "hc18", "--out", str(tmp_path / "no")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--plane head" in bad.stderr and not (tmp_path / "no").exists()


def test_the_skull_reverberates_behind_itself_and_nothing_else_does():
    from fetal_biometry.simulator import physics
    from fetal_biometry.simulator.tissues import TISSUE

    rows, dz = 200, 0.2
    specular = np.zeros((rows, 3), np.float32)
    specular[50] = 1.0  # an interface echo at row 50 in every beam
    tissue = np.full((rows, 3), TISSUE["brain"], np.uint8)
    tissue[50, 0] = TISSUE["skull"]  # the first beam meets skull there, the second other bone
    tissue[50, 1] = TISSUE["femur"]
    echoes = physics._bone_reverberation(specular, tissue, dz)
    step = round(physics.BONE_REVERB_MM / dz)
    for k in physics.BONE_REVERB_ORDERS:
        assert echoes[50 + k * step, 0] == pytest.approx(physics.BONE_REVERB_RATIO ** k)
    assert echoes[:50].sum() == 0 and echoes[:, 1:].sum() == 0
