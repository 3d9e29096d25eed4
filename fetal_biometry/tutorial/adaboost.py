"""AdaBoost with decision stumps, exactly as Part 1-4 of the tutorial writes it.

Given :math:`(x_1, y_1), \\dots, (x_m, y_m)` with :math:`y_i \\in \\{-1, +1\\}`:

* :math:`D_1(x_i) = 1/m`;
* for :math:`t = 1, \\dots, T`: train a weak learner on :math:`D_t`, get :math:`h_t` with weighted
  error :math:`\\epsilon_t = \\sum_i D_t(x_i) [h_t(x_i) \\ne y_i]`, choose
  :math:`\\alpha_t = \\frac12 \\ln((1 - \\epsilon_t) / \\epsilon_t)` and update
  :math:`D_{t+1}(x_i) = D_t(x_i) \\exp(-\\alpha_t y_i h_t(x_i)) / Z_t`;
* output :math:`H(x) = \\mathrm{sign}(\\sum_t \\alpha_t h_t(x))`.

The weak learners are decision stumps :math:`h(x) = s` if :math:`x_j > \\theta` else :math:`-s`.
The best stump over all features and thresholds is found without a Python loop over either:
every feature column is sorted once (the order does not depend on :math:`D_t`), and each round
takes one cumulative sum of the signed weights :math:`D_t(x_i) y_i` in that order, which gives
the weighted error of every threshold of every feature at once.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from tqdm import tqdm


PERFECT = 1e-12  # epsilon_t used for alpha_t when a stump makes no error


class Stump(NamedTuple):
    """Decision stump ``h(x) = polarity if x[feature] > threshold else -polarity``."""

    feature: int
    threshold: float
    polarity: int


class Boosted(NamedTuple):
    """A trained strong classifier ``f(x) = sum_t alpha_t h_t(x)``."""

    stumps: list[Stump]
    alphas: np.ndarray
    errors: np.ndarray  # epsilon_t of each round


def initial_distribution(m: int) -> np.ndarray:
    """:math:`D_1(x_i) = 1/m`."""
    return np.full(m, 1.0 / m)


def weighted_error(D: np.ndarray, predictions: np.ndarray, y: np.ndarray) -> float:
    """:math:`\\epsilon_t = \\sum_i D_t(x_i) [h_t(x_i) \\ne y_i]`."""
    return float(D[predictions != y].sum())


def alpha(epsilon: float) -> float:
    """:math:`\\alpha_t = \\frac12 \\ln((1 - \\epsilon_t) / \\epsilon_t)`."""
    return 0.5 * np.log((1.0 - epsilon) / epsilon)


def reweight(D: np.ndarray, alpha_t: float, y: np.ndarray,
             predictions: np.ndarray) -> tuple[np.ndarray, float]:
    """The multiplicative update before normalisation, and the normaliser :math:`Z_t`.

    Returns :math:`D_t(x_i) \\exp(-\\alpha_t y_i h_t(x_i))` (the source's ``1/200`` and ``1/50`` in
    its worked example) and :math:`Z_t`, their sum.
    """
    unnormalised = D * np.exp(-alpha_t * y * predictions)
    return unnormalised, float(unnormalised.sum())


def update_distribution(D: np.ndarray, alpha_t: float, y: np.ndarray,
                        predictions: np.ndarray) -> np.ndarray:
    """:math:`D_{t+1}(x_i) = D_t(x_i) \\exp(-\\alpha_t y_i h_t(x_i)) / Z_t`."""
    unnormalised, Z = reweight(D, alpha_t, y, predictions)
    return unnormalised / Z


class SortedFeatures(NamedTuple):
    """Every feature column sorted once, and the thresholds worth trying.

    ``order[j]`` sorts feature ``j`` ascending. A split after sorted position ``r`` puts
    positions ``0..r`` below the threshold; only splits between two different values are real
    thresholds, plus the split after the last sample (everything below: a constant vote).
    ``splits`` holds those positions as flat indices into an (n_features, m) array, with the
    feature and threshold each one stands for.
    """

    order: np.ndarray
    splits: np.ndarray
    split_feature: np.ndarray
    split_threshold: np.ndarray


def sort_features(X: np.ndarray) -> SortedFeatures:
    """Sort each column of ``X`` (shape (m, n_features)) once; the order does not depend on D."""
    # Feature-major, so that the per-round cumulative sums run along contiguous rows.
    order = np.argsort(X.T, axis=1, kind="stable")
    values = np.take_along_axis(X.T, order, axis=1).astype(np.float64)
    valid = np.ones(values.shape, dtype=bool)
    valid[:, :-1] = values[:, 1:] > values[:, :-1]
    feature, position = np.nonzero(valid)
    last = position == values.shape[1] - 1
    upper = values[feature, np.minimum(position + 1, values.shape[1] - 1)]
    # Midway between neighbours; past the last value, nothing is above the threshold.
    threshold = np.where(last, np.inf, 0.5 * (values[feature, position] + upper))
    return SortedFeatures(order, np.flatnonzero(valid), feature, threshold)


def fit_stump(D: np.ndarray, y: np.ndarray, features: SortedFeatures) -> tuple[Stump, float]:
    """The stump of lowest weighted error under ``D``, over every feature and threshold.

    For polarity +1 and a split after sorted position ``r``, the stump errs on the positives
    at or below ``r`` and on the negatives above it:

    .. math:: \\epsilon^+(r) = \\sum_{s \\le r} D_s [y_s = 1] + \\sum_{s > r} D_s [y_s = -1]
              = \\sum_{y_s = -1} D_s + \\sum_{s \\le r} D_s y_s,

    one cumulative sum per feature. Polarity -1 errs exactly where +1 is right:
    :math:`\\epsilon^-(r) = \\sum_s D_s - \\epsilon^+(r)`.
    """
    signed = np.cumsum((D * y)[features.order], axis=1).ravel()[features.splits]
    error_plus = D[y == -1].sum() + signed
    best_plus, best_minus = int(np.argmin(error_plus)), int(np.argmax(error_plus))
    error_minus = D.sum() - error_plus[best_minus]
    if error_plus[best_plus] <= error_minus:
        best, polarity, error = best_plus, 1, error_plus[best_plus]
    else:
        best, polarity, error = best_minus, -1, error_minus
    stump = Stump(int(features.split_feature[best]), float(features.split_threshold[best]),
                  polarity)
    return stump, float(error)


def predict_stump(stump: Stump, X: np.ndarray) -> np.ndarray:
    """:math:`h_t(x) \\in \\{-1, +1\\}` for every row of ``X``."""
    above = X[:, stump.feature] > stump.threshold
    return np.where(above, stump.polarity, -stump.polarity)


def fit(X: np.ndarray, y: np.ndarray, rounds: int, progress: bool = False) -> Boosted:
    """Run the source's AdaBoost for ``rounds`` rounds with decision stumps.

    Parameters
    ----------
    X : ndarray, shape (m, n_features)
        Training samples, one per row.
    y : ndarray, shape (m,)
        Labels in {-1, +1}.
    rounds : int
        :math:`T`. Training stops early after a perfect stump (:math:`\\epsilon_t = 0`: its
        :math:`\\alpha_t` would be infinite, so :math:`\\epsilon_t` is taken as 1e-12 there), or
        before a stump no better than chance (:math:`\\epsilon_t \\ge 1/2`).
    progress : bool
        Show a progress bar.
    """
    y = np.asarray(y)
    if not np.isin(y, (-1, 1)).all():
        raise ValueError("labels must be -1 or +1")
    features = sort_features(X)
    D = initial_distribution(len(y))
    stumps, alphas, errors = [], [], []
    for _ in tqdm(range(rounds), desc="AdaBoost rounds", disable=not progress):
        stump, _ = fit_stump(D, y, features)
        predictions = predict_stump(stump, X)
        epsilon = weighted_error(D, predictions, y)
        if epsilon >= 0.5:
            break
        # A perfect stump would get an infinite vote: a finite, dominant one does the same.
        alpha_t = alpha(max(epsilon, PERFECT))
        stumps.append(stump)
        alphas.append(alpha_t)
        errors.append(epsilon)
        if epsilon == 0.0:
            break
        D = update_distribution(D, alpha_t, y, predictions)
    return Boosted(stumps, np.array(alphas), np.array(errors))


def staged_scores(model: Boosted, X: np.ndarray) -> np.ndarray:
    """:math:`\\sum_{t \\le T'} \\alpha_t h_t(x)` for every :math:`T'`: shape (rounds, m)."""
    votes = np.array([a * predict_stump(s, X) for s, a in zip(model.stumps, model.alphas)])
    return np.cumsum(votes, axis=0)


def predict(model: Boosted, X: np.ndarray) -> np.ndarray:
    """:math:`H(x) = \\mathrm{sign}(\\sum_t \\alpha_t h_t(x))`; a zero sum counts as +1."""
    scores = sum((a * predict_stump(s, X) for s, a in zip(model.stumps, model.alphas)),
                 np.zeros(len(X)))
    return np.where(scores >= 0, 1, -1)


def staged_errors(model: Boosted, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Error rate of :math:`H` after each round: shape (rounds,)."""
    predictions = np.where(staged_scores(model, X) >= 0, 1, -1)
    return (predictions != y).mean(axis=1)


def digits_task(images: np.ndarray, labels: np.ndarray, positive: int,
                negative: int) -> tuple[np.ndarray, np.ndarray]:
    """Two MNIST digits against each other: pixels as features, labels +1 / -1."""
    keep = (labels == positive) | (labels == negative)
    X = images[keep].reshape(keep.sum(), -1)
    return X, np.where(labels[keep] == positive, 1, -1)
