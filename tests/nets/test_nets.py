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



@pytest.mark.parametrize("name, iteration", [("net_iter_1500.caffemodel", 1500),
                                             ("a_iter_b_iter_7.solverstate", 7),
                                             ("net_iter_.caffemodel", None),
                                             ("net_iter_12x.caffemodel", None),
                                             ("net.caffemodel", None)])
def test_snapshot_iteration_reads_caffe_snapshot_names(name, iteration):
    assert solvers.snapshot_iteration(name) == iteration
