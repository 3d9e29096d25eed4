"""Scan augmentation: seeded draws, beams turned with the scan, labels nearest, uint8 intensities."""
import dataclasses

import cv2
import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.patches import augment, encoding as patches

H, W = 96, 104
CONVEX = geom.ConvexProbe((52.0, -30.0), 35.0, 140.0, (-32.0, 32.0))
LINEAR = geom.LinearProbe((12.0, 4.0), 80.0, 0.0, 88.0, angle=12.0)


def _scan(probe):
    """Smooth texture brightening with depth, a few labelled blocks, OUTSIDE beyond the fan."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.normal(0, 40, (H, W)).astype(np.float32), (0, 0), 2.0)
    ys = np.mgrid[0:H, 0:W][0]
    image = np.clip(60 + ys + texture, 0, 255).astype(np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[20:40, 30:60], labels[50:62, 40:55], labels[66:72, 60:80] = 1, 2, 3
    directions = geom.beam_directions(probe, (H, W))
    labels[np.isnan(directions[..., 0])] = OUTSIDE
    return image, labels, directions


def _interior(directions, margin=3):
    """Pixels at least ``margin`` px inside the fan (no edge pixel's neighbours outside it)."""
    fan = (~np.isnan(directions[..., 0])).astype(np.uint8)
    return cv2.erode(fan, np.ones((2 * margin + 1,) * 2, np.uint8)).astype(bool)


def _forward(points, directions, scale, angle):
    """Points (N, 2) x, y moved as :func:`augment.warp` moves the scan."""
    m = augment.matrix(scale, angle, augment.fan_centre(directions))
    return points @ m[:, :2].T + m[:, 2]


def test_draws_are_seeded_and_within_the_ranges():
    first = [augment.draw(np.random.default_rng(3)) for _ in range(2)]
    assert first[0] == first[1]
    draws = [augment.draw(rng) for rng in [np.random.default_rng(4)] for _ in range(200)]
    for field in dataclasses.fields(augment.Ranges):
        values = [getattr(d, field.name) for d in draws]
        low, high = getattr(augment.RANGES, field.name)
        assert low <= min(values) and max(values) <= high
        assert max(values) - min(values) > 0.8 * (high - low)  # the whole range is used
    # Factors are log-uniform: as many below 1 as above.
    assert 0.4 < np.mean([d.gamma < 1 for d in draws]) < 0.6
    assert augment.draw(np.random.default_rng(4), augment.Ranges(rotation_deg=(5, 5))).rotation_deg == 5


@pytest.mark.parametrize("field, value, message", [
    ("gamma", (0.0, 1.2), r"gamma=\(0.0, 1.2\): need 0 < low <= high"),
    ("blur_sigma_px", (-1.0, 1.0), r"need 0 <= low <= high"),
    ("gain_db", (3.0, -3.0), r"gain_db=\(3.0, -3.0\): need low <= high"),
    ("noise_gray", (0.0, float("nan")), r"noise_gray"),
    ("rotation_deg", (-60.0, 10.0), r"at most 45 degrees"),
])
def test_ranges_that_make_no_sense_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        augment.Ranges(**{field: value})


def test_the_identity_transform_changes_nothing():
    image, labels, directions = _scan(CONVEX)
    out = augment.apply(image, labels, directions, augment.Transform(), np.random.default_rng(0))
    np.testing.assert_array_equal(out[0], image)
    np.testing.assert_array_equal(out[1], labels)
    np.testing.assert_allclose(out[2], directions, atol=1e-6)


@pytest.mark.parametrize("scale, angle", [(1.0, 9.0), (1.08, -7.0), (0.92, 4.0)])
def test_warped_beams_are_the_beams_of_the_turned_probe(scale, angle):
    """Turning the scan turns its fan: rays from the moved apex; the vectors turned alike."""
    image, labels, directions = _scan(CONVEX)
    out = augment.warp(image, labels, directions, scale, angle)[2]
    apex = _forward(np.array([CONVEX.apex]), directions, scale, angle)[0]
    ys, xs = np.nonzero(_interior(out))
    ray = np.stack([xs - apex[0], ys - apex[1]], axis=1)
    # Within 0.2 degrees: OpenCV's bilinear weights are quantised to 1/32 px.
    np.testing.assert_allclose(out[ys, xs], ray / np.hypot(*ray.T)[:, None], atol=3.5e-3)
    turn = np.radians(angle)
    steered = np.radians(LINEAR.angle)
    _, _, out = augment.warp(image, labels, geom.beam_directions(LINEAR, (H, W)), scale, angle)
    beam = np.array([np.sin(steered), np.cos(steered)])  # every linear beam, turned by the angle:
    turned = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]) @ beam
    inside = _interior(out)
    np.testing.assert_allclose(out[inside], np.broadcast_to(turned, (inside.sum(), 2)), atol=1e-4)
    assert np.abs(beam - turned).max() > 0.06


def test_labels_are_nearest_and_outside_where_the_turned_fan_is_not():
    image, labels, directions = _scan(CONVEX)
    for scale, angle in [(1.0, 10.0), (0.9, -10.0), (1.1, 6.0)]:
        _, out_labels, out = augment.warp(image, labels, directions, scale, angle)
        assert set(np.unique(out_labels)) <= set(np.unique(labels))  # nearest: no blends
        np.testing.assert_array_equal(out_labels == OUTSIDE, np.isnan(out[..., 0]))
        # A labelled block's centre moves with the scan and keeps its label.
        for (y, x), value in [((30, 45), 1), ((56, 47), 2), ((69, 70), 3)]:
            x2, y2 = np.rint(_forward(np.array([[x, y]], float), directions, scale, angle)[0]).astype(int)
            assert out_labels[y2, x2] == value
        # Pixels whose source lies outside the original fan (or the image) are OUTSIDE.
        inverse = np.linalg.inv(np.vstack([augment.matrix(scale, angle, augment.fan_centre(directions)),
                                           [0, 0, 1]]))
        ys, xs = np.mgrid[0:H, 0:W]
        source = np.rint(np.tensordot(inverse[:2], np.stack([xs, ys, np.ones_like(xs)]), 1)).astype(int)
        inside = (source[0] >= 0) & (source[0] < W) & (source[1] >= 0) & (source[1] < H)
        was_fan = np.zeros((H, W), bool)
        was_fan[inside] = labels[source[1][inside], source[0][inside]] != OUTSIDE
        assert (out_labels[~was_fan] == OUTSIDE).all()
        assert (~was_fan & (labels != OUTSIDE)).any()  # and there are such pixels


def test_a_beam_down_patch_is_the_same_after_the_scan_is_turned():
    """The point of turning the vectors: the rotate encoding sees the same anatomy, beam down."""
    image, labels, directions = _scan(CONVEX)
    angle = 10.0
    turned, _, out = augment.warp(image, labels, directions, 1.0, angle)
    m = augment.matrix(1.0, angle, augment.fan_centre(directions))
    back = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    same, unturned = [], []
    for y2, x2 in [(45, 52), (55, 40), (60, 64), (70, 52)]:
        x, y = back @ [x2, y2, 1]
        original = (np.array([x, y]) - CONVEX.apex) / np.hypot(x - CONVEX.apex[0], y - CONVEX.apex[1])
        reference = patches._rotated_patch(image, original, y, x, 16).astype(int)
        same.append(np.abs(patches._rotated_patch(turned, out[y2, x2], y2, x2, 16) - reference).mean())
        unturned.append(np.abs(patches._rotated_patch(turned, original, y2, x2, 16) - reference).mean())
    assert max(same) < 2.5 and min(unturned) > 2 * max(same)


def test_intensity_saturates_in_uint8_and_does_what_it_says():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    image[:8], image[8:16] = 255, 0
    fan = np.ones(image.shape, bool)
    bright = augment.intensity(image, fan, augment.Transform(gain_db=20.0, contrast=2.0), rng)
    assert bright.dtype == np.uint8 and (bright[:8] == 255).all()  # clipped, never wrapped round
    noisy = augment.intensity(image, fan, augment.Transform(noise_gray=30.0), rng)
    assert noisy[:8].min() > 100 and noisy[8:16].max() < 155 and noisy[:8].mean() > 240
    dark = augment.intensity(image, fan, augment.Transform(gain_db=-20.0), rng)
    assert (dark[8:16] == 0).all() and (dark[:8] == 255 - 85).all()
    flat = np.full((64, 64), 100, np.uint8)
    assert (augment.intensity(flat, fan, augment.Transform(gain_db=6.0), rng) == 126).all()  # 6 x 4.25
    assert augment.intensity(flat, fan, augment.Transform(gamma=0.7), rng)[0, 0] > 100 > \
        augment.intensity(flat, fan, augment.Transform(gamma=1.4), rng)[0, 0]
    noisy = augment.intensity(flat, fan, augment.Transform(noise_gray=5.0), rng).astype(float)
    assert abs(noisy.std() - 5) < 0.5 and abs(noisy.mean() - 100) < 0.5
    speckled = augment.intensity(flat, fan, augment.Transform(speckle=0.1), rng).astype(float)
    assert abs(speckled.std() - 10) < 1
    blurred = augment.intensity(image, fan, augment.Transform(blur_sigma_px=1.0), rng)
    assert blurred[20:].astype(float).std() < 0.6 * image[20:].astype(float).std()
    stretched = augment.intensity(image, fan, augment.Transform(contrast=0.5), rng).astype(float)
    assert abs(stretched.std() - 0.5 * image.std()) < 1


def test_apply_is_seeded_and_what_came_in_from_outside_encodes_as_outside():
    image, labels, directions = _scan(CONVEX)
    transform = augment.draw(np.random.default_rng(2))
    runs = [augment.apply(image, labels, directions, transform, np.random.default_rng(9)) for _ in range(2)]
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes()
    other = augment.apply(image, labels, directions, transform, np.random.default_rng(10))[0]
    assert not np.array_equal(other, runs[0][0])
    planes = patches.encode(runs[0][0], runs[0][2], "channels")
    assert (planes[:, np.isnan(runs[0][2][..., 0])] == [[0], [128], [128]]).all()  # outside reads as outside
