"""Binary RBM (Part 1-3): the likelihood gradient, the CD-1 rule, training on MNIST."""
import numpy as np
import pytest

from fetal_biometry.tutorial import mnist, rbm


def tiny_rbm(seed=0, n_visible=6, n_hidden=4):
    rng = np.random.default_rng(seed)
    return rbm.RBM(rng.normal(0, 0.5, (n_visible, n_hidden)), rng.normal(0, 0.5, n_visible),
                   rng.normal(0, 0.5, n_hidden))


def test_free_energy_marginalises_the_energy():
    machine = tiny_rbm()
    v = rbm.all_states(6)
    h = rbm.all_states(4)
    # -F(v) = log sum_h exp(-E(v, h)), enumerating all 16 hidden states.
    energies = np.array([rbm.energy(np.repeat(row[None], len(h), 0), h, machine) for row in v])
    np.testing.assert_allclose(-rbm.free_energy(v, machine),
                               np.log(np.exp(-energies).sum(axis=1)), rtol=1e-12)


def test_likelihood_gradient_is_data_minus_model():
    """The source's d log L / dW = <v h>_data - <v h>_model, against finite differences."""
    machine = tiny_rbm(1)
    V = (np.random.default_rng(2).random((20, 6)) < 0.4).astype(float)
    gradient = rbm.exact_gradient(V, machine)
    step = 1e-6
    for field in ("W", "a", "b"):
        values = getattr(machine, field)
        numeric = np.zeros_like(values)
        for index in np.ndindex(values.shape):
            shifted = values.copy()
            shifted[index] += step
            plus = rbm.exact_log_likelihood(V, machine._replace(**{field: shifted}))
            shifted[index] -= 2 * step
            minus = rbm.exact_log_likelihood(V, machine._replace(**{field: shifted}))
            numeric[index] = (plus - minus) / (2 * step)
        np.testing.assert_allclose(getattr(gradient, field), numeric, atol=1e-8)


def test_cd1_update_is_the_source_formula_per_sample():
    rng = np.random.default_rng(3)
    v, h, v2, h2 = (rng.random((1, n)) for n in (5, 3, 5, 3))
    delta = rbm.cd1_update(v, h, v2, h2, epsilon=0.01)
    np.testing.assert_allclose(delta.W, 0.01 * (np.outer(v, h) - np.outer(v2, h2)))
    np.testing.assert_allclose(delta.a, 0.01 * (v - v2)[0])
    np.testing.assert_allclose(delta.b, 0.01 * (h - h2)[0])


def test_cd1_mini_batch_update_is_the_mean_of_per_sample_updates():
    rng = np.random.default_rng(4)
    v, h, v2, h2 = (rng.random((7, n)) for n in (5, 3, 5, 3))
    batch = rbm.cd1_update(v, h, v2, h2, epsilon=0.1)
    singles = [rbm.cd1_update(v[i:i + 1], h[i:i + 1], v2[i:i + 1], h2[i:i + 1], 0.1)
               for i in range(7)]
    for field in ("W", "a", "b"):
        np.testing.assert_allclose(getattr(batch, field),
                                   np.mean([getattr(s, field) for s in singles], axis=0))


def test_cd1_raises_the_exact_likelihood():
    """Carreira-Perpinan & Hinton: CD-1 heads towards the likelihood's maximum. Tiny RBM,
    exact log-likelihood by enumeration, data from two binary patterns with noise."""
    rng = np.random.default_rng(5)
    patterns = np.array([[1, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 1]], float)
    V = patterns[rng.integers(0, 2, 200)]
    V = np.abs(V - (rng.random(V.shape) < 0.05))
    before = rbm.exact_log_likelihood(V, rbm.initialize(8, 4, np.random.default_rng(0)))
    trained, _ = rbm.train(V, 4, epsilon=0.1, iterations=2000, batch_size=10, seed=0)
    after = rbm.exact_log_likelihood(V, trained)
    assert after > before + 1.5  # from about -5.5 nats per sample (8 ln 2) to about -2.7


def test_training_is_deterministic_given_the_seed():
    V = rbm.binarize(mnist.load("train", limit=300)[0])
    a, history_a = rbm.train(V, 16, iterations=200, seed=7)
    b, history_b = rbm.train(V, 16, iterations=200, seed=7)
    c, _ = rbm.train(V, 16, iterations=200, seed=8)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(history_a, history_b)
    assert not np.array_equal(a.W, c.W)


@pytest.fixture(scope="module")
def mnist_rbm():
    images, labels = mnist.load("train", limit=5000)
    V = rbm.binarize(images)
    machine, history = rbm.train(V, 64, epsilon=0.01, iterations=5000, batch_size=1, seed=0)
    return V, labels, machine, history


def test_mnist_reconstruction_improves(mnist_rbm):
    V, _, machine, history = mnist_rbm
    assert history[-500:].mean() < 0.6 * history[:500].mean()
    untrained = rbm.initialize(784, 64, np.random.default_rng(0))
    assert rbm.reconstruction_error(V[:1000], machine) < \
        0.5 * rbm.reconstruction_error(V[:1000], untrained)


def test_mnist_features_beat_untrained_features(mnist_rbm):
    V, labels, machine, _ = mnist_rbm
    test_images, test_labels = mnist.load("test", limit=2000)
    V_test = rbm.binarize(test_images)

    def accuracy(features_of):
        B, c = rbm.fit_readout(features_of(V), labels, max_iter=200)
        return (rbm.predict_readout(features_of(V_test), B, c) == test_labels).mean()

    untrained = rbm.initialize(784, 64, np.random.default_rng(0))
    trained_accuracy = accuracy(lambda v: rbm.hidden_probabilities(v, machine))
    untrained_accuracy = accuracy(lambda v: rbm.hidden_probabilities(v, untrained))
    assert trained_accuracy > 0.83  # about 0.86, against 0.71 untrained
    assert trained_accuracy > untrained_accuracy + 0.05


def test_readout_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    X, Y = rng.random((30, 4)), np.eye(3)[rng.integers(0, 3, 30)]
    theta = rng.normal(size=5 * 3)
    _, grad = rbm._softmax_loss(theta, X, Y, 0.1)
    numeric = np.array([(rbm._softmax_loss(theta + e, X, Y, 0.1)[0]
                         - rbm._softmax_loss(theta - e, X, Y, 0.1)[0]) / 2e-6
                        for e in 1e-6 * np.eye(len(theta))])
    np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_bases_grid_places_each_column_as_a_tile():
    W = np.arange(2 * 784, dtype=float).reshape(2, 784).T  # two bases, each a ramp
    grid = rbm.bases_grid(W, columns=2)
    assert grid.shape == (30, 59)
    np.testing.assert_allclose(grid[1:29, 1:29], np.linspace(0, 1, 784).reshape(28, 28))
    assert np.all(grid[0] == 1) and np.all(grid[:, 29] == 1)
