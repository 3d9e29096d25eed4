"""Head biometry on simulated truth maps: HC, OFD, BPD (both conventions), CI against the exact truth."""
import numpy as np
import pytest

from fetal_biometry.measure import head
from fetal_biometry.labels import BACKGROUND, OUTSIDE
from fetal_biometry.simulator import cases, planes


@pytest.fixture(scope="module")
def measured():
    made = [cases.simulate_case(21, i, (256, 256), "mixed", 0.4, plane="head") for i in range(12)]
    return [(c, head.measure(c.labels, c.spacing_mm, c.geometry)) for c in made]


def test_truth_maps_are_measured_within_a_percent(measured):
    for case, m in measured:
        truth = case.biometry.measurements
        assert m.hc_mm is not None, m.reasons
        for key, value in m.as_measurements().items():
            assert value == pytest.approx(truth[key], rel=0.015), (case.name, key)
        assert m.cephalic_index == pytest.approx(truth["BPD_OO"] / truth["OFD"], abs=0.01)


def test_the_far_inner_border_is_found_where_the_truth_has_it(measured):
    # outer-to-inner is shorter than outer-to-outer by one skull table: 0.8-4.5 mm here
    for case, m in measured:
        assert 0.3 < m.bpd_oo_mm - m.bpd_oi_mm < 5.0, case.name


def test_oblique_heads_are_measured_but_not_accepted(measured):
    oblique = [m for c, m in measured if c.biometry.plane_reason == planes.OBLIQUE_HEAD]
    assert oblique and all(not m.accepted and "oblique" in m.reasons[-1] for m in oblique)
    fit = [m for c, m in measured if c.biometry.plane_acceptable]
    assert fit and all(m.accepted for m in fit)


def test_no_head_and_a_head_cut_by_the_fan_are_not_measured(measured):
    case, _ = measured[0]
    empty = np.where(case.labels == OUTSIDE, OUTSIDE, BACKGROUND).astype(np.uint8)
    assert head.measure(empty, case.spacing_mm).reasons[0].startswith("HC not measured: no head")
    e = case.biometry.ellipse
    cut = case.labels.copy()
    cut[:, : int(e.cx)] = OUTSIDE  # half of the head outside the scan
    m = head.measure(cut, case.spacing_mm)
    assert m.hc_mm is None and m.reasons[0].startswith("HC not measured")


def test_transcerebellar_heads_are_told_by_their_landmarks(measured):
    posterior = [m for c, m in measured if c.biometry.plane_reason == planes.TRANSCEREBELLAR]
    assert posterior
    for m in posterior:
        assert not m.accepted and m.hc_mm is not None
        assert any(r.startswith("cerebellum in view") for r in m.reasons)
        assert any(r.startswith("thalami not seen") for r in m.reasons)


def test_mislabelled_pixels_move_neither_the_numbers_nor_the_verdict(measured):
    from fetal_biometry.labels import DATASET_CLASSES

    rng = np.random.default_rng(0)
    for case, clean in measured[:6]:
        noisy = case.labels.copy()
        flip = (rng.random(noisy.shape) < 0.1) & (noisy != OUTSIDE)
        noisy[flip] = rng.choice(list(DATASET_CLASSES), np.count_nonzero(flip))
        m = head.measure(noisy, case.spacing_mm, case.geometry)
        assert m.accepted == clean.accepted, (case.name, m.reasons)
        assert m.hc_mm == pytest.approx(case.biometry.measurements["HC"], rel=0.01)
