"""AdaBoost (Part 1-4): the source's worked example, the stump search, and a real task."""
import numpy as np
import pytest

from fetal_biometry.tutorial import adaboost, mnist


def quiz():
    """The source's O/X quiz: 100 questions, a weak learner that gets 80 right (in random order)."""
    rng = np.random.default_rng(0)
    y = rng.choice([-1, 1], 100)
    right = np.zeros(100, dtype=bool)
    right[rng.choice(100, 80, replace=False)] = True
    return y, np.where(right, y, -y), right


def test_worked_example_alpha_is_ln2():
    y, h, _ = quiz()
    D1 = adaboost.initial_distribution(100)
    assert np.allclose(D1, 1 / 100)
    epsilon = adaboost.weighted_error(D1, h, y)
    assert epsilon == pytest.approx(0.2)
    assert adaboost.alpha(epsilon) == pytest.approx(np.log(2), rel=1e-12)


def test_worked_example_new_weights_are_1_200_and_1_50():
    y, h, right = quiz()
    D1 = adaboost.initial_distribution(100)
    unnormalised, Z = adaboost.reweight(D1, adaboost.alpha(0.2), y, h)
    np.testing.assert_allclose(unnormalised[right], 1 / 200, rtol=1e-12)
    np.testing.assert_allclose(unnormalised[~right], 1 / 50, rtol=1e-12)
    assert Z == pytest.approx(80 / 200 + 20 / 50)
    D2 = adaboost.update_distribution(D1, adaboost.alpha(0.2), y, h)
    assert D2.sum() == pytest.approx(1.0)
    # After the update the old learner is a coin toss under D_2: half the weight on its errors.
    assert adaboost.weighted_error(D2, h, y) == pytest.approx(0.5)


def brute_force_stump_error(X, y, D):
    best = np.inf
    for j in range(X.shape[1]):
        for threshold in np.concatenate([[-np.inf], np.unique(X[:, j])]):
            for polarity in (1, -1):
                h = np.where(X[:, j] > threshold, polarity, -polarity)
                best = min(best, adaboost.weighted_error(D, h, y))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_stump_search_finds_the_best_stump(seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 6, (40, 5)).astype(float)  # many ties, as in MNIST pixels
    y = rng.choice([-1, 1], 40)
    D = rng.random(40)
    D /= D.sum()
    stump, error = adaboost.fit_stump(D, y, adaboost.sort_features(X))
    assert error == pytest.approx(brute_force_stump_error(X, y, D), abs=1e-12)
    assert adaboost.weighted_error(D, adaboost.predict_stump(stump, X), y) == \
        pytest.approx(error, abs=1e-12)


def test_rounds_follow_the_source_formulas():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] + X[:, 1] ** 2 - 1 > 0, 1, -1)
    model = adaboost.fit(X, y, rounds=15)
    D = adaboost.initial_distribution(len(y))
    for stump, alpha, epsilon in zip(model.stumps, model.alphas, model.errors):
        h = adaboost.predict_stump(stump, X)
        assert epsilon == pytest.approx(np.sum(D * (h != y)))
        assert alpha == pytest.approx(0.5 * np.log((1 - epsilon) / epsilon))
        D = D * np.exp(-alpha * y * h)
        D /= D.sum()
    scores = sum(a * adaboost.predict_stump(s, X) for s, a in zip(model.stumps, model.alphas))
    np.testing.assert_array_equal(adaboost.predict(model, X), np.where(scores >= 0, 1, -1))


def test_training_error_is_below_the_product_of_normalisers():
    """Freund & Schapire: training error of H <= prod_t Z_t = prod_t 2 sqrt(e_t (1 - e_t))."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 6))
    y = np.where(np.sin(3 * X[:, 0]) + X[:, 2] > 0, 1, -1)
    model = adaboost.fit(X, y, rounds=40)
    bound = np.cumprod(2 * np.sqrt(model.errors * (1 - model.errors)))
    assert np.all(adaboost.staged_errors(model, X, y) <= bound + 1e-12)


def test_labels_must_be_plus_minus_one():
    with pytest.raises(ValueError):
        adaboost.fit(np.zeros((3, 1)), np.array([0, 1, 1]), rounds=1)


def test_mnist_3_vs_5_test_error_falls():
    X, y = adaboost.digits_task(*mnist.load("train", limit=10_000), 3, 5)
    X_test, y_test = adaboost.digits_task(*mnist.load("test"), 3, 5)
    model = adaboost.fit(X, y, rounds=50)
    test_error = adaboost.staged_errors(model, X_test, y_test)
    # One stump: about 24% test error; 50 rounds: about 6%.
    assert test_error[0] > 0.15
    assert test_error[-1] < 0.09
    assert adaboost.staged_errors(model, X, y)[-1] < 0.06


def test_a_perfect_stump_ends_training_with_a_finite_dominant_vote():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([-1, -1, 1, 1])
    model = adaboost.fit(X, y, rounds=10)
    assert len(model.stumps) == 1 and model.errors[0] == 0
    assert np.isfinite(model.alphas[0])
    assert model.stumps[0] == adaboost.Stump(0, 1.5, 1)
    np.testing.assert_array_equal(adaboost.predict(model, X), y)
