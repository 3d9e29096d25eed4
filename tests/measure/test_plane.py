"""Plane type and its measurements from a class map, on a simulated mix of abdomen, head and femur."""
import numpy as np
import pytest

from fetal_biometry.measure import growth, plane
from fetal_biometry.labels import BACKGROUND, OUTSIDE
from fetal_biometry.simulator import cases


@pytest.fixture(scope="module")
def mixed():
    return [cases.simulate_case(31, i, (256, 256), "mixed", 0.3, plane="mixed") for i in range(15)]


def test_the_plane_type_of_truth_maps_is_the_simulated_one(mixed):
    kinds = [c.biometry.structure for c in mixed]
    assert set(kinds) == {"abdomen", "head", "femur"}
    assert [plane.plane_type(c.labels, c.spacing_mm) for c in mixed] == kinds


def test_each_plane_gives_what_it_allows_measuring(mixed):
    allowed = {"abdomen": {"AC"}, "head": {"HC", "OFD", "BPD_OO", "BPD_OI"}, "femur": {"FL"}}
    for case in mixed:
        result = plane.measure_plane(case.labels, case.spacing_mm, case.geometry)
        assert set(result.measurements) <= allowed[result.kind]
        if case.biometry.structure != "abdomen" and case.biometry.plane_acceptable:
            assert set(result.measurements) == allowed[result.kind] and result.accepted
            for key, value in result.measurements.items():
                assert value == pytest.approx(case.biometry.measurements[key], rel=0.02)
        growth.panel(result.measurements)  # the plain dict the panel reads


def test_a_map_without_any_structure_measures_nothing(mixed):
    case = mixed[0]
    empty = np.where(case.labels == OUTSIDE, OUTSIDE, BACKGROUND).astype(np.uint8)
    result = plane.measure_plane(empty, case.spacing_mm)
    assert result.kind == "none" and result.measurements == {} and not result.accepted


def test_a_segmented_abdomen_is_measured_by_the_segmenters_method_and_recorded(mixed):
    from fetal_biometry.measure import abdomen

    case = next(c for c in mixed if c.biometry.structure == "abdomen" and c.biometry.plane_acceptable)
    result = plane.measure_plane(case.labels, case.spacing_mm, case.geometry)
    assert isinstance(result.detail, abdomen.Measurement)
    assert result.measurements["AC"] == pytest.approx(case.biometry.ac_mm, rel=0.01)
    found = plane.record(result)
    assert found["plane_type"] == "abdomen" and found["ac_mm"] == result.measurements["AC"]
    head = next(c for c in mixed if c.biometry.structure == "head" and c.biometry.plane_acceptable)
    found = plane.record(plane.measure_plane(head.labels, head.spacing_mm, head.geometry))
    truth = head.biometry.measurements
    assert found["cephalic_index"] == pytest.approx(truth["BPD_OO"] / truth["OFD"], abs=0.01)
    femur = next(c for c in mixed if c.biometry.structure == "femur" and c.biometry.plane_acceptable)
    found = plane.record(plane.measure_plane(femur.labels, femur.spacing_mm, femur.geometry))
    assert len(found["femur_ends"]) == 2 and set(found["measurements"]) == {"FL"}


def test_each_plane_is_drawn_with_its_measurement(mixed):
    from fetal_biometry import figures

    for case in mixed[:6]:
        result = plane.measure_plane(case.labels, case.spacing_mm, case.geometry)
        picture = figures.draw_plane(case.image, result)
        assert picture.shape == (*case.image.shape, 3) and picture.dtype == np.uint8
        assert (picture != case.image[..., None]).any()  # something is drawn
