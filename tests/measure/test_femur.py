"""Femur length on simulated truth maps: end to end along the ossified diaphysis, foreshortening."""
import numpy as np
import pytest

from fetal_biometry.measure import femur
from fetal_biometry.labels import BACKGROUND, FEMUR, OUTSIDE
from fetal_biometry.simulator import cases, planes


@pytest.fixture(scope="module")
def measured():
    made = [cases.simulate_case(22, i, (256, 256), "mixed", 0.4, plane="femur") for i in range(12)]
    return [(c, femur.measure(c.labels, c.spacing_mm, c.geometry)) for c in made]


def test_fit_femurs_are_measured_within_a_millimetre(measured):
    fit = [(c, m) for c, m in measured if c.biometry.plane_acceptable]
    assert len(fit) >= 4
    for case, m in fit:
        assert m.accepted, m.reasons
        assert m.fl_mm == pytest.approx(case.biometry.measurements["FL"], abs=1.0), case.name
        assert m.beam_angle_deg >= 60  # drawn within 25 degrees of perpendicular to the beam


def test_foreshortened_femurs_are_told_by_their_tapering_ends(measured):
    short = [(c, m) for c, m in measured if c.biometry.plane_reason == planes.FORESHORTENED]
    assert short
    for case, m in short:
        assert not m.accepted and "foreshortened" in m.reasons[0]
        assert m.fl_mm < 0.9 * case.biometry.measurements["FL"]


def test_no_femur_and_a_femur_out_of_the_scan_are_not_measured(measured):
    case, m = measured[0]
    empty = np.where(case.labels == OUTSIDE, OUTSIDE, BACKGROUND).astype(np.uint8)
    assert femur.measure(empty, case.spacing_mm).reasons == ("FL not measured: no femur found",)
    cut = case.labels.copy()
    cut[:, int(np.mean([m.ends[0][0], m.ends[1][0]])):] = OUTSIDE
    assert femur.measure(cut, case.spacing_mm).reasons[0].startswith("FL not measured: the femur runs out")


def test_a_femur_along_the_beam_is_not_accepted(measured):
    case, _ = measured[0]
    bar = np.where(case.labels == OUTSIDE, OUTSIDE, BACKGROUND).astype(np.uint8)
    bar[60:180, 126:131] = FEMUR  # vertical: along a beam near the middle of the fan
    m = femur.measure(bar, case.spacing_mm, case.geometry)
    assert m.fl_mm == pytest.approx(120 * case.spacing_mm, abs=case.spacing_mm)
    assert not m.accepted and "beam runs along the femur" in m.reasons[-1]


def test_mislabelled_pixels_do_not_move_the_femur_length(measured):
    from fetal_biometry.labels import DATASET_CLASSES

    rng = np.random.default_rng(0)
    for case, clean in [(c, m) for c, m in measured if m.accepted][:4]:
        noisy = case.labels.copy()
        flip = (rng.random(noisy.shape) < 0.05) & (noisy != OUTSIDE)
        noisy[flip] = rng.choice(list(DATASET_CLASSES), np.count_nonzero(flip))
        m = femur.measure(noisy, case.spacing_mm, case.geometry)
        assert m.accepted and m.fl_mm == pytest.approx(case.biometry.measurements["FL"], abs=1.5)
