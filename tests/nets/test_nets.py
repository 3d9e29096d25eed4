"""The generated nets: the tutorial CNN's exact shapes and unknowns, checked-in files current."""
import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.nets import catalog, solvers, spec as nets

from conftest import ROOT


@pytest.fixture(scope="module")
def tutorial_net(tmp_path_factory):
    path = nets.save(nets.tutorial_cnn_inputs(2, "euclidean"),
                     tmp_path_factory.mktemp("net") / "net.prototxt")
    return caffe().Net(str(path), caffe().TRAIN)


def test_tutorial_cnn_has_the_source_shapes(tutorial_net):
    shapes = {name: blob.data.shape[1:] for name, blob in tutorial_net.blobs.items()}
    assert shapes["data"] == (1, 28, 28)
    assert shapes["c1"] == (32, 24, 24)
    assert shapes["p2"] == (32, 12, 12)
    assert shapes["c3"] == (64, 8, 8)
    assert shapes["p4"] == (64, 4, 4)
    assert shapes["f5"] == (256,)
    assert shapes["out"] == (10,)


def test_tutorial_cnn_has_the_source_count_of_unknowns(tutorial_net):
    # 26x32 + 801x64 + 1025x256 + 257x10, as the source counts them.
    assert nets.count_parameters(tutorial_net) == 26 * 32 + 801 * 64 + 1025 * 256 + 257 * 10


def test_relu_after_every_conv_and_f5_but_not_the_output(tutorial_net):
    rng = np.random.default_rng(0)
    tutorial_net.blobs["data"].data[...] = rng.standard_normal((2, 1, 28, 28))
    tutorial_net.forward()
    for name in ("c1", "c3", "f5"):
        assert tutorial_net.blobs[name].data.min() >= 0
    assert tutorial_net.blobs["out"].data.min() < 0  # identity output: negatives survive


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        nets.tutorial_cnn_inputs(1, "hinge")


def test_checked_in_prototxt_match_the_generator():
    for relative, text in catalog.generate().items():
        path = ROOT / relative
        assert path.is_file(), f"{relative} missing: run python tools/make_prototxt.py"
        assert path.read_text() == text, f"{relative} is stale: run python tools/make_prototxt.py"



def test_segmenter_unet_keeps_the_input_side_and_doubles_channels_per_level(tmp_path):
    path = nets.save(nets.segmenter_deploy(3, 64, 96, classes=8, depth=4, width=8), tmp_path / "d.prototxt")
    net = caffe().Net(str(path), caffe().TEST)
    shapes = {name: blob.data.shape[1:] for name, blob in net.blobs.items()}
    assert shapes["data"] == (3, 64, 96)
    for level in range(4):
        side = (64 >> level, 96 >> level)
        assert shapes[f"enc{level}b"] == (8 << level, *side)
        assert shapes[f"pool{level}"] == (8 << level, side[0] // 2, side[1] // 2)
        assert shapes[f"up{level}"] == (8 << level, *side)
        assert shapes[f"cat{level}"] == (16 << level, *side)
        assert shapes[f"dec{level}b"] == (8 << level, *side)
    assert shapes["enc4b"] == (128, 4, 6)
    assert shapes["prob"] == (8, 64, 96)
    train = nets.segmenter("img", "lab", infogain="w.binaryproto")
    types = {layer.type for param in (train, nets.segmenter_deploy(3, 64, 96)) for layer in param.layer}
    assert types == set(nets.SEGMENTER_LAYER_TYPES) - {"SoftmaxWithLoss"}  # BVLC Caffe 1.0 layers
    # Reshaped to another input, the same net runs: one net serves every scan size.
    net.blobs["data"].reshape(1, 3, 32, 48)
    net.reshape()
    assert net.forward()["prob"].shape == (1, 8, 32, 48)
    assert np.allclose(net.blobs["prob"].data.sum(axis=1), 1, atol=1e-5)


def test_segmenter_sides_must_fit_its_poolings():
    with pytest.raises(ValueError, match="multiples of 16"):
        nets.segmenter_deploy(1, 100, 128)
    with pytest.raises(ValueError, match="unknown class balance"):
        nets.segmenter("a", "b", balance="focal")


def test_segmenter_train_net_ignores_outside_and_normalises_by_valid_pixels():
    net = nets.segmenter("img", "lab", infogain="w.binaryproto")
    loss = next(layer for layer in net.layer if layer.name == "loss")
    assert loss.type == "InfogainLoss" and loss.infogain_loss_param.source == "w.binaryproto"
    assert loss.loss_param.ignore_label == 255
    assert loss.loss_param.normalization == caffe().params.Loss.VALID
    plain = nets.segmenter("img", "lab", balance="none")
    assert next(layer for layer in plain.layer if layer.name == "loss").type == "SoftmaxWithLoss"


@pytest.mark.parametrize("name, iteration", [("net_iter_1500.caffemodel", 1500),
                                             ("a_iter_b_iter_7.solverstate", 7),
                                             ("net_iter_.caffemodel", None),
                                             ("net_iter_12x.caffemodel", None),
                                             ("net.caffemodel", None)])
def test_snapshot_iteration_reads_caffe_snapshot_names(name, iteration):
    assert solvers.snapshot_iteration(name) == iteration
