"""Net surgery: the fully convolutional classifier scores whole scans as the patch net scores patches."""
import cv2
import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.inference import dense as inference
from fetal_biometry.nets import spec as nets
from fetal_biometry.patches import encoding as patches

H, W = 96, 84


def _fan_directions(apex=(42.0, -60.0)):
    ys, xs = np.mgrid[0:H, 0:W].astype(float)
    v = np.stack([xs - apex[0], ys - apex[1]], axis=-1)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    v[:4, :4] = np.nan  # a corner outside the fan
    return v


@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 256, (H, W)).astype(np.uint8), (0, 0), 1.5)


def _random_classifier(tmp_path, encoding):
    deploy = nets.save(nets.patch_classifier_deploy(patches.channels(encoding)),
                       tmp_path / f"{encoding}.prototxt")
    net = caffe().Net(str(deploy), caffe().TEST)
    rng = np.random.default_rng(5)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.standard_normal(blob.data.shape) * 0.05
    weights = tmp_path / f"{encoding}.caffemodel"
    net.save(str(weights))
    return deploy, weights, net


@pytest.mark.parametrize("encoding", ["channels", "none"])
def test_dense_output_equals_patchwise_output_on_the_grid(tmp_path, scan, encoding):
    deploy, weights, patch_net = _random_classifier(tmp_path, encoding)
    directions = _fan_directions()
    dense = inference.DenseClassifier(deploy, weights, encoding)
    probs = dense.probabilities(scan, directions)
    planes = patches.encode(scan, directions, encoding)
    centers = [(y, x) for y in range(8, H, 4 * 5) for x in range(4, W, 4 * 4)]
    for (y, x), patch in zip(centers, patches.extract(planes, directions, centers, patches.SIZE, encoding)):
        data = patch.astype(np.float32) * patches.INPUT_SCALE
        expected = patch_net.forward(data=data[None])["prob"][0]
        np.testing.assert_allclose(probs[:, y, x], expected, atol=2e-5)


def test_tiles_give_the_same_maps_as_one_pass(tmp_path, scan, monkeypatch):
    deploy, weights, _ = _random_classifier(tmp_path, "none")
    directions = _fan_directions()
    whole = inference.DenseClassifier(deploy, weights, "none").probabilities(scan, directions)
    monkeypatch.setattr(inference, "TILE", 7)  # 24 x 21 grid points: 4 x 3 tiles, a ragged last row
    tiled = inference.DenseClassifier(deploy, weights, "none")
    np.testing.assert_allclose(tiled.probabilities(scan, directions), whole, atol=1e-6)
    # One net, reshaped to each tile: its input never grows past a full tile.
    tile_side = inference.STRIDE * (7 - 1) + tiled.patch
    assert max(tiled.net.net.blobs["data"].data.shape[2:]) <= tile_side


def test_encoding_that_does_not_fit_the_net_is_refused(tmp_path):
    deploy, weights, _ = _random_classifier(tmp_path, "channels")
    with pytest.raises(ValueError, match="3 input channel.*'rotate' encoding gives 1"):
        inference.DenseClassifier(deploy, weights, "rotate")


def test_a_scan_at_another_spacing_is_classified_at_the_model_spacing(tmp_path, scan):
    """Twice the pixels at half the spacing: the same maps, brought back to the finer grid."""
    from fetal_biometry.geometry import probe as geom

    deploy, weights, _ = _random_classifier(tmp_path, "channels")
    probe = geom.ConvexProbe((42.0, -60.0), 60.0, 170.0, (-30.0, 30.0))
    fine_probe = geom.ConvexProbe((84.5, -119.5), 120.0, 340.0, (-30.0, 30.0))
    fine = cv2.resize(scan, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    dense = inference.DenseClassifier(deploy, weights, "channels", spacing_mm=0.6)
    coarse_probs, coarse_labels = dense.classify_scan(scan, probe, 0.6)
    fine_probs, fine_labels = dense.classify_scan(fine, fine_probe, 0.3)
    assert fine_labels.shape == (2 * H, 2 * W)
    back = fine_labels[::2, ::2]  # the fine pixel nearest each coarse pixel centre
    inside = (coarse_labels != 255) & (back != 255)
    assert inside.mean() > 0.5 and np.mean(back[inside] == coarse_labels[inside]) > 0.9


def test_fully_convolutional_keeps_every_weight(tmp_path):
    deploy, weights, patch_net = _random_classifier(tmp_path, "channels")
    fcn = caffe().Net(str(nets.save(nets.patch_classifier_dense(3, 64, 64),
                                    tmp_path / "fcn.prototxt")), caffe().TEST)
    inference.transplant(patch_net, fcn)
    assert fcn.params["f5"][0].data.shape == (256, 64, 9, 9)  # p4 of a 48 px patch
    for name in patch_net.params:
        for a, b in zip(patch_net.params[name], fcn.params[name]):
            np.testing.assert_array_equal(a.data.ravel(), b.data.ravel())


def test_rotated_scan_frame_matches_rotated_patches(scan):
    # Densely, "rotate" turns the whole scan by a sector's beam angle; the patch cut there at
    # the mapped position must be the patch extract() samples in the beam's frame.
    d = np.array([0.6, 0.8])
    directions = np.broadcast_to(d, (H, W, 2)).copy()
    angle = np.degrees(np.arctan2(-d[0], d[1]))
    matrix = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle, 1.0)
    turned = cv2.warpAffine(scan, matrix, (W, H), flags=cv2.INTER_LINEAR)
    y, x = 50, 40
    mx, my = np.rint(matrix @ [x, y, 1.0]).astype(int)
    expected = patches.extract(scan[None], directions, [(y, x)], 24, "rotate")[0, 0]
    got = turned[my - 12:my + 12, mx - 12:mx + 12]
    assert np.abs(expected.astype(int) - got).mean() < 3  # same content, sub-pixel resampling apart
