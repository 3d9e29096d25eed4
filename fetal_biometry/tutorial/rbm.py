"""A binary restricted Boltzmann machine trained by one step of contrastive divergence (Part 1-3).

The source's model: binary visible units :math:`v` (the pixels), binary hidden units :math:`h`,
energy :math:`E(v, h) = -(a^T v + b^T h + v^T W h)` and Gibbs distribution
:math:`P(v, h) = e^{-E(v, h)} / Z`. Its log-likelihood gradient is
:math:`\\langle v h^T \\rangle_{data} - \\langle v h^T \\rangle_{model}`; the model term needs
:math:`Z`, so the source updates with CD-1 instead (Carreira-Perpinan & Hinton, 2005):

.. math:: \\Delta W = \\epsilon (v h^T - v' h'^T), \\quad \\Delta a = \\epsilon (v - v'),
          \\quad \\Delta b = \\epsilon (h - h'),

where :math:`v'` is the reconstruction of :math:`v` after one Gibbs step and :math:`h'` its
hidden response. Shapes follow the source: ``W`` is (visible, hidden), ``a`` the visible
biases, ``b`` the hidden biases. Arrays of states hold one sample per row.

For tiny models, :func:`exact_log_likelihood` and :func:`exact_gradient` enumerate every state,
so the source's derivation can be checked numerically.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import scipy.optimize
from scipy.special import expit as sigmoid
from scipy.special import log_softmax, logsumexp
from tqdm import tqdm


class RBM(NamedTuple):
    """Parameters: ``W`` (visible, hidden), visible biases ``a``, hidden biases ``b``."""

    W: np.ndarray
    a: np.ndarray
    b: np.ndarray


def binarize(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Gray images as binary visible states, one flattened image per row (float64 0/1)."""
    return (images.reshape(len(images), -1) > threshold).astype(np.float64)


def initialize(n_visible: int, n_hidden: int, rng: np.random.Generator) -> RBM:
    """Small random weights (N(0, 0.01^2), as in Hinton's practical guide), zero biases."""
    return RBM(rng.normal(0.0, 0.01, (n_visible, n_hidden)), np.zeros(n_visible),
               np.zeros(n_hidden))


def energy(v: np.ndarray, h: np.ndarray, rbm: RBM) -> np.ndarray:
    """:math:`E(v, h) = -(a^T v + b^T h + v^T W h)` for each row pair."""
    return -(v @ rbm.a + h @ rbm.b + np.einsum("ki,ij,kj->k", v, rbm.W, h))


def free_energy(v: np.ndarray, rbm: RBM) -> np.ndarray:
    """Free energy, the hidden units summed out.

    .. math:: F(v) = -\\log \\sum_h e^{-E(v, h)} = -a^T v - \\sum_j \\log(1 + e^{b_j + (v^T W)_j})
    """
    return -(v @ rbm.a) - np.logaddexp(0.0, rbm.b + v @ rbm.W).sum(axis=1)


def hidden_probabilities(v: np.ndarray, rbm: RBM) -> np.ndarray:
    """:math:`P(h_j = 1 | v) = \\sigma(b_j + \\sum_i v_i W_{ij})`: the features the readout uses."""
    return sigmoid(rbm.b + v @ rbm.W)


def visible_probabilities(h: np.ndarray, rbm: RBM) -> np.ndarray:
    """:math:`P(v_i = 1 | h) = \\sigma(a_i + \\sum_j W_{ij} h_j)`."""
    return sigmoid(rbm.a + h @ rbm.W.T)


def sample(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binary states drawn with probabilities ``p``."""
    return (rng.random(p.shape) < p).astype(p.dtype)


def gibbs_step(v: np.ndarray, rbm: RBM, rng: np.random.Generator):
    """One step of CD-1 from data ``v``: returns ``(h, v', h')``.

    As Hinton's practical guide recommends, the binary hidden states sampled from
    :math:`P(h | v)` drive the reconstruction, but the statistics use probabilities
    (:math:`h = P(h | v)`, :math:`v' = P(v | h_{sample})`, :math:`h' = P(h | v')`), the expected
    values of the binary states: same expected update, less sampling noise.
    """
    h = hidden_probabilities(v, rbm)
    v_prime = visible_probabilities(sample(h, rng), rbm)
    return h, v_prime, hidden_probabilities(v_prime, rbm)


def cd1_update(v: np.ndarray, h: np.ndarray, v_prime: np.ndarray, h_prime: np.ndarray,
               epsilon: float) -> RBM:
    """The source's update :math:`(\\Delta W, \\Delta a, \\Delta b)`, averaged over a mini-batch.

    With one row this is exactly :math:`\\Delta W = \\epsilon (v h^T - v' h'^T)`,
    :math:`\\Delta a = \\epsilon (v - v')`, :math:`\\Delta b = \\epsilon (h - h')`.
    """
    n = len(v)
    return RBM(epsilon * (v.T @ h - v_prime.T @ h_prime) / n,
               epsilon * (v - v_prime).mean(axis=0),
               epsilon * (h - h_prime).mean(axis=0))


def apply(rbm: RBM, delta: RBM) -> RBM:
    """The source's step.

    .. math:: W_{n+1} = W_n + \\Delta W, \\quad a_{n+1} = a_n + \\Delta a,
              \\quad b_{n+1} = b_n + \\Delta b
    """
    return RBM(rbm.W + delta.W, rbm.a + delta.a, rbm.b + delta.b)


def reconstruction_error(v: np.ndarray, rbm: RBM) -> float:
    """Mean squared difference between ``v`` and its mean-field reconstruction, per pixel."""
    v_prime = visible_probabilities(hidden_probabilities(v, rbm), rbm)
    return float(((v - v_prime) ** 2).mean())


def train(V: np.ndarray, n_hidden: int, epsilon: float = 0.01, iterations: int = 10_000,
          batch_size: int = 10, seed: int = 0, progress: bool = False) -> tuple[RBM, np.ndarray]:
    """Train a binary RBM on the rows of ``V`` with CD-1.

    Parameters
    ----------
    V : ndarray, shape (n_samples, n_visible)
        Binary training data.
    n_hidden : int
        Number of hidden units (the number of "bases").
    epsilon : float
        The source's learning coefficient.
    iterations : int
        Number of updates. One iteration is one CD-1 update on one mini-batch of
        ``batch_size`` samples; mini-batches are drawn in order from a fresh random permutation
        of ``V`` every epoch.
    batch_size : int
        Samples per update (the update is their mean; 1 gives the source's per-sample rule).
    seed : int
        Seeds the initial weights, the shuffling and the Gibbs sampling: same seed, same RBM.
    progress : bool
        Show a progress bar.

    Returns
    -------
    rbm : RBM
    history : ndarray, shape (iterations,)
        Reconstruction error of each mini-batch, :math:`\\|v - v'\\|^2` per pixel.
    """
    if not 1 <= batch_size <= len(V):
        raise ValueError(f"batch_size must be between 1 and the {len(V)} samples")
    rng = np.random.default_rng(seed)
    rbm = initialize(V.shape[1], n_hidden, rng)
    history = np.empty(iterations)
    batches = _batches(len(V), batch_size, rng)
    for n in tqdm(range(iterations), desc="CD-1", disable=not progress):
        v = V[next(batches)]
        h, v_prime, h_prime = gibbs_step(v, rbm, rng)
        rbm = apply(rbm, cd1_update(v, h, v_prime, h_prime, epsilon))
        history[n] = ((v - v_prime) ** 2).mean()
    return rbm, history


def _batches(n_samples: int, batch_size: int, rng: np.random.Generator):
    """Endless mini-batch indices: each epoch a new permutation, cut into consecutive slices."""
    while True:
        order = rng.permutation(n_samples)
        for start in range(0, n_samples - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def all_states(n: int) -> np.ndarray:
    """Every binary vector of length ``n``, one per row (2**n rows)."""
    return np.array(list(itertools.product((0.0, 1.0), repeat=n)))


def log_partition(rbm: RBM) -> float:
    """:math:`\\log Z = \\log \\sum_v e^{-F(v)}` by enumerating every visible state (tiny RBMs)."""
    return float(logsumexp(-free_energy(all_states(len(rbm.a)), rbm)))


def exact_log_likelihood(V: np.ndarray, rbm: RBM) -> float:
    """:math:`\\frac{1}{l} \\sum_i \\log P(v^i)`, exactly (tiny RBMs only)."""
    return float(np.mean(-free_energy(V, rbm)) - log_partition(rbm))


def exact_gradient(V: np.ndarray, rbm: RBM) -> RBM:
    """The source's log-likelihood gradient, exactly (tiny RBMs only).

    :math:`\\langle v h^T \\rangle_{data} - \\langle v h^T \\rangle_{model}` for :math:`W`,
    :math:`\\langle v \\rangle_{data} - \\langle v \\rangle_{model}` for :math:`a` and
    :math:`\\langle h \\rangle_{data} - \\langle h \\rangle_{model}` for :math:`b`. Sums over
    :math:`h` are done in closed form (:math:`\\sum_h P(h | v) h = P(h = 1 | v)`); the model
    term enumerates every visible state, weighted by :math:`P(v) = e^{-F(v)} / Z`.
    """
    states = all_states(len(rbm.a))
    p_v = np.exp(-free_energy(states, rbm) - log_partition(rbm))
    h_data, h_model = hidden_probabilities(V, rbm), hidden_probabilities(states, rbm)
    return RBM(V.T @ h_data / len(V) - (states * p_v[:, None]).T @ h_model,
               V.mean(axis=0) - p_v @ states,
               h_data.mean(axis=0) - p_v @ h_model)


# --- The readout: the source gives no method, this is ours. ---------------------------------

def _softmax_loss(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, l2: float):
    """Mean cross-entropy of softmax(X B + c) against one-hot ``Y``, plus ``l2/2 |B|^2``."""
    n_features, n_classes = X.shape[1], Y.shape[1]
    B = theta[:-n_classes].reshape(n_features, n_classes)
    log_p = log_softmax(X @ B + theta[-n_classes:], axis=1)
    loss = -(Y * log_p).sum() / len(X) + 0.5 * l2 * (B ** 2).sum()
    residual = (np.exp(log_p) - Y) / len(X)
    grad = np.concatenate([(X.T @ residual + l2 * B).ravel(), residual.sum(axis=0)])
    return loss, grad


def fit_readout(features: np.ndarray, labels: np.ndarray, l2: float = 1e-4,
                max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (softmax) from features to digits.

    Minimises the mean cross-entropy plus an L2 penalty on the weights with L-BFGS, from zero:
    a convex problem, so the result does not depend on any seed.

    Returns
    -------
    B : ndarray, shape (n_features, 10)
    c : ndarray, shape (10,)
    """
    classes = int(labels.max()) + 1
    Y = np.eye(classes)[labels]
    theta0 = np.zeros((features.shape[1] + 1) * classes)
    result = scipy.optimize.minimize(_softmax_loss, theta0, args=(features, Y, l2), jac=True,
                                     method="L-BFGS-B", options=dict(maxiter=max_iter))
    return result.x[:-classes].reshape(-1, classes), result.x[-classes:]


def predict_readout(features: np.ndarray, B: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Most probable digit for each row of features."""
    return np.argmax(features @ B + c, axis=1)


def bases_grid(W: np.ndarray, columns: int = 10, shape: tuple[int, int] = (28, 28),
               border: int = 1) -> np.ndarray:
    """The columns of ``W`` as the source's "bases": image tiles on a grid.

    Each basis is scaled to [0, 1] on its own (the weights of different hidden units span
    different ranges); borders are 1.
    """
    n = W.shape[1]
    rows = -(-n // columns)
    tile_h, tile_w = shape[0] + border, shape[1] + border
    grid = np.ones((rows * tile_h + border, columns * tile_w + border))
    for j in range(n):
        w = W[:, j].reshape(shape)
        w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
        r, col = divmod(j, columns)
        grid[border + r * tile_h:border + r * tile_h + shape[0],
             border + col * tile_w:border + col * tile_w + shape[1]] = w
    return grid
