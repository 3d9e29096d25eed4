"""Probe geometry: beam <-> image coordinates, fan mask, beam directions, scan conversion."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom

SHAPE = (120, 160)
CONVEX = geom.ConvexProbe(apex=(80.0, -30.0), start_depth=40.0, end_depth=140.0, angles=(-30.0, 25.0))
LINEAR = geom.LinearProbe(origin=(20.0, 5.0), width=90.0, start_depth=0.0, end_depth=100.0, angle=12.0)
PROBES = pytest.mark.parametrize("probe", [CONVEX, LINEAR], ids=["convex", "linear"])


@PROBES
def test_beam_and_image_coordinates_invert_each_other(probe):
    rng = np.random.default_rng(0)
    depth = rng.uniform(probe.start_depth, probe.end_depth, 500)
    lateral = rng.uniform(*geom.lateral_range(probe), 500)
    back = geom.image_to_beam(probe, *geom.beam_to_image(probe, depth, lateral))
    np.testing.assert_allclose(back, (depth, lateral), atol=1e-9)


def test_fan_mask_area_matches_the_geometry():
    convex = geom.fan_mask(CONVEX, (300, 300))
    span = math.radians(CONVEX.angles[1] - CONVEX.angles[0])
    sector = span / 2 * (CONVEX.end_depth ** 2 - CONVEX.start_depth ** 2)
    assert convex.sum() == pytest.approx(sector, rel=0.01)
    strip = geom.fan_mask(LINEAR, (300, 300))
    parallelogram = LINEAR.width * LINEAR.end_depth * math.cos(math.radians(LINEAR.angle))
    assert strip.sum() == pytest.approx(parallelogram, rel=0.01)


def test_fan_mask_follows_the_fan_edges():
    mask = geom.fan_mask(CONVEX, SHAPE)
    y, x = 60, 80  # on the centre line, 90 px from the apex
    assert mask[y, x]
    assert not mask[0, 80]  # 30 px from the apex: above the probe face
    # Just inside and just outside the left edge beam at depth 100.
    for angle, inside in ((-29.0, True), (-31.0, False)):
        px, py = geom.beam_to_image(CONVEX, 100.0, angle)
        assert mask[int(round(py)), int(round(px))] == inside


@PROBES
def test_beam_directions_are_unit_vectors_along_the_beams(probe):
    directions = geom.beam_directions(probe, SHAPE)
    mask = geom.fan_mask(probe, SHAPE)
    assert directions.shape == (*SHAPE, 2) and directions.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(directions[..., 0]), ~mask)
    np.testing.assert_array_equal(np.isnan(directions[..., 1]), ~mask)
    inside = directions[mask]
    np.testing.assert_allclose(np.hypot(inside[:, 0], inside[:, 1]), 1, atol=1e-6)
    # A step along the direction goes deeper along the same beam.
    y, x = np.nonzero(mask)
    depth, lateral = geom.image_to_beam(probe, x, y)
    deeper, same = geom.image_to_beam(probe, x + inside[:, 0], y + inside[:, 1])
    np.testing.assert_allclose(deeper - depth, 1, atol=1e-5)
    np.testing.assert_allclose(same, lateral, atol=1e-3)


def test_convex_directions_point_away_from_the_apex_and_linear_ones_are_constant():
    d = geom.beam_directions(CONVEX, SHAPE)
    assert d[60, 40, 0] < 0 < d[60, 110, 0]  # left of the apex the beams lean left
    assert np.all(d[..., 1][~np.isnan(d[..., 1])] > 0)  # always downwards here
    d = geom.beam_directions(LINEAR, SHAPE)
    inside = d[~np.isnan(d[..., 0])]
    np.testing.assert_allclose(inside, np.tile([math.sin(math.radians(12)), math.cos(math.radians(12))],
                                               (len(inside), 1)), atol=1e-6)


@PROBES
def test_scan_conversion_puts_each_sample_where_its_beam_runs(probe):
    beam_shape = (201, 151)
    depth, lateral = geom.beam_samples(probe, beam_shape)
    mask = geom.fan_mask(probe, SHAPE)
    y, x = np.indices(SHAPE)
    want_depth, want_lateral = geom.image_to_beam(probe, x, y)
    # Bilinear interpolation reproduces functions linear in beam coordinates, up to cv2.remap's
    # fixed-point weights (1/32 of a sample).
    depth_image, lateral_image = np.meshgrid(depth, lateral, indexing="ij")
    got_depth = geom.scan_convert(depth_image, probe, SHAPE, fill=-1)
    got_lateral = geom.scan_convert(lateral_image, probe, SHAPE, fill=-1)
    np.testing.assert_allclose(got_depth[mask], want_depth[mask], atol=np.diff(depth)[0] / 32)
    np.testing.assert_allclose(got_lateral[mask], want_lateral[mask], atol=np.diff(lateral)[0] / 32)
    assert np.all(got_depth[~mask] == -1)


def test_nearest_scan_conversion_keeps_label_values():
    labels = np.random.default_rng(1).integers(0, 8, (50, 40)).astype(np.uint8)
    image = geom.scan_convert(labels, CONVEX, SHAPE, nearest=True, fill=255)
    mask = geom.fan_mask(CONVEX, SHAPE)
    assert set(np.unique(image[mask])) <= set(range(8))
    assert np.all(image[~mask] == 255)


@PROBES
def test_geometry_round_trips_through_json(probe):
    data = json.loads(json.dumps(geom.to_dict(probe)))
    assert geom.from_dict(data) == probe


@pytest.mark.parametrize("data, message", [
    ({"type": "sector"}, "type 'convex' or 'linear'"),
    ({"type": "convex", "apex": [0, 0], "start_depth": 1, "angles": [-1, 1]}, "'end_depth'"),
    ({"type": "convex", "apex": [0], "start_depth": 1, "end_depth": 2, "angles": [-1, 1]}, "'apex'"),
    ({"type": "linear", "origin": [0, 0], "width": "9", "start_depth": 0, "end_depth": 1, "angle": 0},
     "'width'"),
    ({"type": "linear", "origin": [0, 0], "width": 9, "start_depth": 0, "end_depth": 1, "angle": 0,
      "focus": 3}, "unknown fields"),
])
def test_from_dict_names_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message):
        geom.from_dict(data)


def test_problems_of_a_geometry():
    assert geom.problems(CONVEX, SHAPE) == []
    assert geom.problems(LINEAR, SHAPE) == []
    off = geom.ConvexProbe((80.0, 500.0), 10.0, 50.0, (-30.0, 30.0))
    assert "entirely outside" in geom.problems(off, SHAPE)[0]
    bad = geom.ConvexProbe((80.0, 0.0), 50.0, 10.0, (30.0, -95.0))
    found = " | ".join(geom.problems(bad, SHAPE))
    assert "start_depth < end_depth" in found and "lateral range" in found and "(-90, 90)" in found


def test_clip_rectangle_cuts_the_fan_everywhere():
    clipped = geom.ConvexProbe(CONVEX.apex, CONVEX.start_depth, CONVEX.end_depth, CONVEX.angles,
                               clip=(30.0, 20.0, 120.0, 100.0))
    full, mask = geom.fan_mask(CONVEX, SHAPE), geom.fan_mask(clipped, SHAPE)
    y, x = np.indices(SHAPE)
    inside = (x >= 30) & (x <= 120) & (y >= 20) & (y <= 100)
    np.testing.assert_array_equal(mask, full & inside)
    np.testing.assert_array_equal(np.isnan(geom.beam_directions(clipped, SHAPE)[..., 0]), ~mask)
    beam = np.ones((20, 20), np.float32)
    np.testing.assert_array_equal(geom.scan_convert(beam, clipped, SHAPE) == 1, mask)
    assert geom.problems(clipped, SHAPE) == []
    bad = geom.LinearProbe(LINEAR.origin, LINEAR.width, 0.0, 100.0, clip=(50.0, 0.0, 10.0, 90.0))
    assert "x0 < x1" in geom.problems(bad, SHAPE)[0]


def test_clip_in_json_is_optional_and_round_trips():
    clipped = geom.LinearProbe(LINEAR.origin, LINEAR.width, 0.0, 100.0, 12.0, clip=(0.0, 0.0, 159.0, 119.0))
    data = json.loads(json.dumps(geom.to_dict(clipped)))
    assert data["clip"] == [0.0, 0.0, 159.0, 119.0] and geom.from_dict(data) == clipped
    assert "clip" not in geom.to_dict(LINEAR)  # records without it read as before
    with pytest.raises(ValueError, match="'clip' must be a list of 4 numbers"):
        geom.from_dict({**geom.to_dict(LINEAR), "clip": [0, 0, 5]})
