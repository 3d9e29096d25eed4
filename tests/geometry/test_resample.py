"""Resampling to a target spacing: images, labels and probe geometry stay in register."""
import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom, resample

SHAPE = (120, 100)
PROBES = [geom.ConvexProbe((50.0, -30.0), 40.0, 140.0, (-32.0, 28.0)),
          geom.LinearProbe((12.0, 5.0), 70.0, 0.0, 100.0, 10.0),
          geom.ConvexProbe((50.0, -30.0), 40.0, 160.0, (-40.0, 40.0), clip=(8.0, 0.0, 90.0, 110.0))]


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("scale", [0.5, 0.37, 2.0, 1.6])
def test_resampled_geometry_is_the_resampled_fan(probe, scale):
    mask = geom.fan_mask(probe, SHAPE).astype(np.uint8)
    resampled = resample.labels(mask, scale)
    predicted = geom.fan_mask(resample.geometry(probe, scale), resampled.shape)
    assert resampled.shape == resample.shape(SHAPE, scale)
    edge = np.count_nonzero(predicted) ** 0.5 * 4  # disagreement only along the fan's outline
    assert np.count_nonzero(predicted != resampled.astype(bool)) < edge


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.8])
def test_beam_directions_map_with_the_geometry(scale):
    probe = PROBES[0]
    moved = resample.geometry(probe, scale)
    y, x = 80, 40  # a pixel inside the fan
    d = geom.beam_directions(probe, SHAPE)[y, x]
    x2, y2 = scale * (x + 0.5) - 0.5, scale * (y + 0.5) - 0.5
    depth, lateral = geom.image_to_beam(moved, x2, y2)
    assert lateral == pytest.approx(np.degrees(np.arctan2(d[0], d[1])), abs=1e-6)
    assert depth == pytest.approx(scale * geom.image_to_beam(probe, x, y)[0])


def test_back_inverts_a_resampling():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    smooth = (50 + 20 * np.sin(xs / 9) + 20 * np.cos(ys / 7)).astype(np.float32)
    for scale in (0.5, 2.0):
        there = resample.image(smooth, scale)
        again = resample.back(there, SHAPE, scale)
        assert again.shape == SHAPE
        inner = (slice(4, -4), slice(4, -4))
        assert np.abs(again[inner] - smooth[inner]).max() < 1.0  # of a 40-level swing
    labels = (rng.random((30, 40)) * 5).astype(np.uint8)
    up = resample.labels(labels, 3.0)
    np.testing.assert_array_equal(resample.back(up, labels.shape, 3.0, nearest=True), labels)


def test_spacings_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        resample.scale_factor(0.0, 0.5)
