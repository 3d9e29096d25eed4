"""The segmenter's encodings: beam-grid resampling there and back, and the planes of each encoding."""
import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom
from fetal_biometry.patches import scan_encoding
from fetal_biometry.labels import OUTSIDE

CONVEX = geom.ConvexProbe(apex=(80.0, -30.0), start_depth=40.0, end_depth=190.0, angles=(-35.0, 30.0))
LINEAR = geom.LinearProbe(origin=(20.0, 10.0), width=120.0, start_depth=0.0, end_depth=140.0)
SHAPE = (170, 160)


def _smooth(shape):
    y, x = np.indices(shape)
    return (128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8)


def _interior(probe, shape, margin=3):
    from scipy import ndimage
    return ndimage.binary_erosion(geom.fan_mask(probe, shape), iterations=margin)


@pytest.mark.parametrize("probe", [CONVEX, LINEAR])
def test_beam_grid_and_back_returns_the_scan(probe):
    image = _smooth(SHAPE)
    beam = geom.to_beam(image, probe, geom.beam_shape(probe))
    back = geom.scan_convert(beam.astype(np.float32), probe, SHAPE)
    inside = _interior(probe, SHAPE)
    assert np.abs(back[inside] - image[inside]).mean() < 3  # bilinear twice, of a smooth scan
    assert (back[~geom.fan_mask(probe, SHAPE)] == 0).all()


@pytest.mark.parametrize("probe", [CONVEX, LINEAR])
def test_beam_grid_labels_come_back_nearly_unchanged(probe):
    labels = (np.indices(SHAPE).sum(axis=0) // 25 % 8).astype(np.uint8)
    labels[~geom.fan_mask(probe, SHAPE)] = OUTSIDE
    beam = scan_encoding.encode_labels(labels, "beam", probe)
    assert set(np.unique(beam)) <= set(np.unique(labels))
    back = geom.scan_convert(beam, probe, SHAPE, nearest=True, fill=OUTSIDE)
    inside = geom.fan_mask(probe, SHAPE)
    assert np.mean(back[inside] == labels[inside]) > 0.95  # only pixels at class edges move


def test_every_beam_runs_down_a_column_of_the_beam_grid():
    # A bright line along one beam of the convex probe is one column of its beam grid.
    image = np.zeros(SHAPE, np.uint8)
    depth = np.linspace(CONVEX.start_depth, CONVEX.end_depth, 400)
    x, y = geom.beam_to_image(CONVEX, depth, np.full_like(depth, 10.0))
    image[np.rint(y).astype(int), np.rint(x).astype(int)] = 255
    beam = geom.to_beam(image, CONVEX, geom.beam_shape(CONVEX))
    column = np.argmax(beam.sum(axis=0))
    lateral = geom.beam_samples(CONVEX, beam.shape)[1][column]
    assert abs(lateral - 10.0) < 1.0
    assert (beam[:, column] > 0).mean() > 0.9


def test_the_encodings_give_their_planes():
    image = _smooth(SHAPE)
    for encoding, channels in (("none", 1), ("channels", 3), ("beam", 1)):
        planes = scan_encoding.encode(image, encoding, CONVEX)
        assert planes.dtype == np.uint8 and planes.shape[0] == channels == scan_encoding.channels(encoding)
        assert planes.shape[1:] == scan_encoding.grid_shape(SHAPE, CONVEX, encoding)
    with pytest.raises(ValueError, match="unknown segmenter encoding 'rotate'"):
        scan_encoding.encode(image, "rotate", CONVEX)
