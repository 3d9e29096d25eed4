"""The hand-derived CNN backpropagation (Part 1-2): finite differences, and Caffe."""
import numpy as np
import pytest

from fetal_biometry.tutorial import backprop, mnist

BATCH = 8


@pytest.fixture(scope="module")
def batch():
    """Eight MNIST images, their one-hot targets, and random weights with nonzero biases."""
    x, labels = mnist.load("train", limit=BATCH)
    params = backprop.random_params(np.random.default_rng(0))
    return params, x, mnist.one_hot(labels)


@pytest.fixture(scope="module")
def numpy_pass(batch):
    params, x, T = batch
    x64, T64 = x.astype(np.float64), T.astype(np.float64)
    return backprop.forward(params, x64), backprop.gradients(params, x64, T64)


# --- NumPy against the definitions -----------------------------------------------------------

def test_unknowns_are_the_source_count():
    params = backprop.initialize(np.random.default_rng(0))
    assert sum(v.size for v in params.values()) == 26 * 32 + 801 * 64 + 1025 * 256 + 257 * 10


def test_layer_shapes_follow_the_source(numpy_pass):
    fw, _ = numpy_pass
    shapes = {"h0": (28, 28), "h1": (32, 24, 24), "h2": (32, 12, 12), "h3": (64, 8, 8),
              "h4": (64, 4, 4), "h5": (256,), "h6": (10,)}
    for name, shape in shapes.items():
        assert getattr(fw, name).shape == (BATCH, *shape), name


def test_layer1_is_g_of_the_sliding_dot_product(batch, numpy_pass):
    """h^1_{i,(m,n)} = g(w^1_i * h^0(m+2, n+2) + b^1_i): the 5x5 patch centred on (m+2, n+2)."""
    params, x, _ = batch
    fw, _ = numpy_pass
    for k, i, m, n in [(0, 0, 0, 0), (3, 17, 11, 5), (7, 31, 23, 23)]:
        z = np.sum(params["w1"][i] * x[k, m:m + 5, n:n + 5]) + params["b1"][i]
        assert fw.h1[k, i, m, n] == pytest.approx(max(z, 0.0), abs=1e-12)


def test_layer3_sums_over_the_32_input_maps(batch, numpy_pass):
    params, _, _ = batch
    fw, _ = numpy_pass
    k, i, m, n = 5, 40, 6, 2
    z = np.sum(params["w3"][i] * fw.h2[k, :, m:m + 5, n:n + 5]) + params["b3"][i]
    assert fw.z3[k, i, m, n] == pytest.approx(z, rel=1e-12)


def test_max_pool_saves_the_argmax_and_unpool_routes_to_it():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(2, 3, 8, 8))
    h[0, 0, :2, :2] = 0.0  # a tie: the first in row-major order wins, as in Caffe
    pooled, argmax = backprop.max_pool(h)
    for k, c, m, n in np.ndindex(pooled.shape):
        window = h[k, c, 2 * m:2 * m + 2, 2 * n:2 * n + 2]
        assert pooled[k, c, m, n] == window.max()
        assert argmax[k, c, m, n] == np.argmax(window)
    assert argmax[0, 0, 0, 0] == 0
    grad = rng.normal(size=pooled.shape)
    routed = backprop.unpool(grad, argmax)
    assert routed.shape == h.shape
    # Each window passes its pooled gradient to the saved argmax only (the tie: to the first).
    for k, c, m, n in np.ndindex(pooled.shape):
        expected = np.zeros(4)
        expected[np.argmax(h[k, c, 2 * m:2 * m + 2, 2 * n:2 * n + 2])] = grad[k, c, m, n]
        np.testing.assert_array_equal(routed[k, c, 2 * m:2 * m + 2, 2 * n:2 * n + 2].ravel(),
                                      expected)


def test_relu_derivative_is_one_at_zero_as_the_source_writes():
    np.testing.assert_array_equal(backprop.g_prime(np.array([-1.0, 0.0, 2.0])), [0, 1, 1])


@pytest.mark.parametrize("name", backprop.NAMES)
def test_gradients_match_finite_differences(batch, numpy_pass, name):
    params, x, T = batch
    _, (_, grads) = numpy_pass
    rng = np.random.default_rng(list(backprop.NAMES).index(name))
    indices = [tuple(int(rng.integers(s)) for s in params[name].shape) for _ in range(2)]
    indices.append(np.unravel_index(np.abs(grads[name]).argmax(), grads[name].shape))
    for index in indices:
        numeric = backprop.finite_difference(params, x, T, name, index)
        assert grads[name][index] == pytest.approx(numeric, rel=1e-6, abs=1e-8), index


def test_gradients_add_up_over_chunks(batch, numpy_pass):
    """E and its gradient are sums over k, so any chunking of the samples gives the same."""
    params, x, T = batch
    _, (E, grads) = numpy_pass
    E2, grads2 = backprop.gradients(params, x.astype(np.float64), T.astype(np.float64), chunk=3)
    assert E2 == pytest.approx(E, rel=1e-12)
    for name in backprop.NAMES:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-10, atol=1e-12)


def test_a_small_descent_step_lowers_E(batch, numpy_pass):
    params, x, T = batch
    _, (E, grads) = numpy_pass
    stepped = backprop.descend(params, grads, 1e-4)
    assert backprop.total_error(stepped, x.astype(np.float64), T.astype(np.float64)) < E


def test_training_on_mnist_learns():
    x, labels = mnist.load("train", limit=500)
    x_test, test_labels = mnist.load("test", limit=1000)
    params = backprop.initialize(np.random.default_rng(0))
    trained, history = backprop.train(params, x, mnist.one_hot(labels), eta=0.002, epochs=3,
                                      batch_size=20)
    assert history[-1] < 0.3 * history[0]  # about 405 -> 118
    assert (backprop.predict(trained, x_test) == test_labels).mean() > 0.65  # about 0.76


# --- Against Caffe ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def caffe_pass(batch, tmp_path_factory):
    try:
        from fetal_biometry.caffe_env import caffe
        caffe().set_mode_cpu()
    except ImportError as err:
        pytest.skip(f"pycaffe unavailable: {err}")
    params, x, T = batch
    net = backprop.caffe_net(BATCH, tmp_path_factory.mktemp("caffe"))
    activations, grads = backprop.caffe_forward_backward(net, params, x, T)
    return net, activations, grads


@pytest.mark.parametrize("h", list(backprop.CAFFE_BLOBS))
def test_forward_agrees_with_caffe_layer_by_layer(numpy_pass, caffe_pass, h):
    fw, _ = numpy_pass
    _, activations, _ = caffe_pass
    mine = getattr(fw, h)
    theirs = activations[h].reshape(mine.shape)
    assert backprop.relative_error(mine, theirs) < 1e-5  # float32 precision: measured ~3e-7


def test_caffe_loss_is_E_divided_by_the_batch(numpy_pass, caffe_pass):
    _, (E, _) = numpy_pass
    net, _, _ = caffe_pass
    assert BATCH * float(net.blobs["loss"].data) == pytest.approx(E, rel=1e-5)


@pytest.mark.parametrize("name", backprop.NAMES)
def test_gradients_agree_with_caffe_backward(numpy_pass, caffe_pass, name):
    _, (_, grads) = numpy_pass
    _, _, caffe_grads = caffe_pass
    assert backprop.relative_error(grads[name], caffe_grads[name]) < 1e-4


def test_descent_step_equals_one_caffe_sgd_iteration(batch, numpy_pass, caffe_pass, tmp_path):
    params, x, T = batch
    _, (_, grads) = numpy_pass
    base_lr = 0.1
    stepped = backprop.caffe_sgd_step(params, x, T, base_lr, tmp_path)
    mine = backprop.descend(params, grads, eta=base_lr / BATCH)  # Caffe's loss is E / N
    for name in backprop.NAMES:
        change, caffe_change = mine[name] - params[name], stepped[name] - params[name]
        assert np.abs(caffe_change).max() > 0, name
        assert backprop.relative_error(change, caffe_change) < 1e-4, name
        np.testing.assert_allclose(stepped[name], mine[name], rtol=0, atol=1e-6)


def test_source_and_caffe_relu_differ_only_at_zero(batch, caffe_pass, monkeypatch):
    """With zero biases, blank image patches give pre-activations of exactly 0: there the
    source's g'(0) = 1 passes gradient to b^1, Caffe's ReLU does not. (Hence nonzero biases
    in the other checks.)"""
    params, x, T = batch
    net, _, _ = caffe_pass
    zero_bias = {**params, "b1": np.zeros(32)}
    _, caffe_grads = backprop.caffe_forward_backward(net, zero_bias, x, T)
    _, grads = backprop.gradients(zero_bias, x.astype(np.float64), T.astype(np.float64))
    fw = backprop.forward(zero_bias, x.astype(np.float64))
    assert np.any(fw.z1 == 0)
    assert backprop.relative_error(grads["b1"], caffe_grads["b1"]) > 1e-3
    # Caffe's convention, g'(0) = 0, restores agreement.
    monkeypatch.setattr(backprop, "g_prime", lambda z: (z > 0).astype(z.dtype))
    _, caffe_convention = backprop.gradients(zero_bias, x.astype(np.float64),
                                             T.astype(np.float64))
    assert backprop.relative_error(caffe_convention["b1"], caffe_grads["b1"]) < 1e-4
