"""The AC from a segmented abdomen, and the fluid boundary as a second opinion."""
import cv2
import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom
from fetal_biometry.measure import abdomen, biometry
from fetal_biometry.measure.ellipse import Ellipse, ellipse_perimeter
from fetal_biometry.labels import (ABDOMEN, BACKGROUND, FLUID, OUTSIDE, SHADOW, SPINE, STOMACH, VEIN)

SHAPE = (256, 256)
SPACING = 0.7
PROBE = geom.ConvexProbe(apex=(128.0, -60.0), start_depth=60.0, end_depth=310.0, angles=(-40.0, 40.0))
TRUE = Ellipse(128.0, 140.0, 62.0, 55.0, 20.0)


def _draw(ellipse: Ellipse, value: int, canvas: np.ndarray) -> None:
    cv2.ellipse(canvas, ((ellipse.cx, ellipse.cy), (2 * ellipse.a, 2 * ellipse.b), ellipse.angle),
                int(value), -1)


def drawn_map(fluid_ring: float = 0.0, fluid: bool = True, shadow: bool = True) -> np.ndarray:
    """A segmenter's map: the abdomen (with stomach, vein, spine) in fluid inside a convex fan;
    ``fluid_ring`` px of tissue (background) between the abdomen and the fluid; a shadow band
    below the spine crossing the body wall."""
    labels = np.full(SHAPE, BACKGROUND, np.uint8)
    if fluid:
        _draw(Ellipse(TRUE.cx, TRUE.cy, TRUE.a + 30, TRUE.b + 30, TRUE.angle), FLUID, labels)
    if fluid_ring:
        _draw(Ellipse(TRUE.cx, TRUE.cy, TRUE.a + fluid_ring, TRUE.b + fluid_ring, TRUE.angle),
              BACKGROUND, labels)
    _draw(TRUE, ABDOMEN, labels)
    cv2.circle(labels, (110, 130), 9, int(STOMACH), -1)
    cv2.line(labels, (135, 150), (150, 125), int(VEIN), 4)
    cv2.circle(labels, (128, 175), 6, int(SPINE), -1)
    if shadow:
        labels[182:, 122:135] = np.where(labels[182:, 122:135] != SPINE, SHADOW, SPINE)
    labels[~geom.fan_mask(PROBE, SHAPE)] = OUTSIDE
    return labels


def test_the_ac_of_a_drawn_abdomen_mask_is_its_ellipses():
    measured = abdomen.measure(drawn_map(), SPACING)
    truth = ellipse_perimeter(TRUE.a, TRUE.b) * SPACING
    assert measured.ac_mm == pytest.approx(truth, rel=0.01)
    assert measured.accepted, measured.reasons
    assert measured.support.visible < 1  # the shadow hides part of the wall; the fit bridges it
    assert measured.spine is not None and measured.second.ac_mm == pytest.approx(truth, rel=0.02)


def test_an_abdomen_against_the_wall_is_measured_by_the_segmenter_alone():
    measured = abdomen.measure(drawn_map(fluid=False), SPACING)
    assert measured.second.ac_mm is None  # no fluid edge: the fluid method cannot measure
    assert measured.ac_mm == pytest.approx(ellipse_perimeter(TRUE.a, TRUE.b) * SPACING, rel=0.01)


def test_two_methods_that_disagree_report_no_ac():
    # Tissue between the abdomen and the fluid: the fluid method outlines it too, 8 px larger.
    measured = abdomen.measure(drawn_map(fluid_ring=8), SPACING)
    assert measured.ac_mm is None and measured.ellipse is None
    assert measured.reasons[0].startswith(f"{biometry.NOT_MEASURED}: {abdomen.DISAGREE}")
    assert not measured.accepted and measured.support.disagreement > abdomen.DISAGREEMENT
    # Within the margin they agree; a wider margin takes the segmenter's AC.
    wide = abdomen.measure(drawn_map(fluid_ring=8), SPACING, limits={"DISAGREEMENT": 0.5})
    assert wide.ac_mm == pytest.approx(ellipse_perimeter(TRUE.a, TRUE.b) * SPACING, rel=0.01)
    alone = abdomen.measure(drawn_map(fluid_ring=8), SPACING, second_opinion=False)
    assert alone.ac_mm == wide.ac_mm and alone.second is None


def test_a_map_without_an_abdomen_measures_nothing_and_says_so():
    labels = drawn_map()
    labels[np.isin(labels, (ABDOMEN, STOMACH, VEIN, SPINE, SHADOW))] = FLUID
    measured = abdomen.measure(labels, SPACING)
    assert measured.ac_mm is None and not measured.accepted
    assert measured.reasons[0].startswith(biometry.NOT_MEASURED)
    assert measured.spine is None  # located and reported, no rule of the verdict


def test_a_region_that_is_no_ellipse_is_not_trusted():
    # Two bodies side by side, touching: one region, shaped like a peanut.
    labels = np.full(SHAPE, FLUID, np.uint8)
    for cx in (95, 165):
        cv2.circle(labels, (cx, 140), 38, int(ABDOMEN), -1)
    labels[~geom.fan_mask(PROBE, SHAPE)] = OUTSIDE
    measured = abdomen.measure(labels, SPACING, second_opinion=False)
    assert measured.ac_mm is None and measured.reasons[0].startswith(biometry.NOT_MEASURED)


def test_unknown_class_values_are_refused():
    with pytest.raises(ValueError, match="unknown class values"):
        abdomen.measure(np.full((32, 32), 9, np.uint8), SPACING)
