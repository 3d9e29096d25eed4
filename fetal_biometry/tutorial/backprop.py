"""The tutorial's MNIST CNN and its hand-derived backpropagation (Part 1-2), in NumPy.

The net, in the source's names::

    Input h^0 [1@28x28] - C1 h^1 [32@24x24] - P2 h^2 [32@12x12] - C3 h^3 [64@8x8]
    - P4 h^4 [64@4x4] - F5 h^5 [256] - output h^6 = o [10]

with :math:`g(x) = \\max(0, x)` after C1, C3 and F5, and the error over the training set

.. math:: E(W) = \\frac12 \\sum_k \\|o(x[k]) - T[k]\\|^2.

Every layer's forward pass and every gradient the source derives is one function below, named
after the source's symbols (``h0`` .. ``h6``, ``w1, b1, w3, b3, w5, b5, W6, b6``) and vectorised
over the training sample index ``k``, which is the first axis of every activation. Layer
indices written as :math:`(m, n)` in the source are 1-based; arrays here are 0-based.

Conventions shared with Caffe (so the tests can compare the two):

* the output activation :math:`f` is the identity (:math:`f' = 1`): the Caffe net feeds its last
  InnerProduct straight into the loss;
* ":math:`w * h(3, 3)`" is a sliding dot product (cross-correlation, no kernel flip), as in
  Caffe's Convolution;
* the 2x2 max pooling takes the first maximum in row-major order, as Caffe does;
* F5 flattens :math:`h^4` in (channel, row, column) order, as Caffe's InnerProduct does.

One convention differs: the source's :math:`g'(0) = 1`, Caffe's ReLU passes no gradient at 0.
They disagree only where a pre-activation is exactly 0, e.g. zero biases on an all-blank image
patch; the Caffe checks use nonzero biases, where that has probability zero.

Parameters are a dict ``{"w1", "b1", "w3", "b3", "w5", "b5", "w6", "b6"}`` of arrays shaped
``w1`` (32, 5, 5), ``w3`` (64, 32, 5, 5), ``w5`` (256, 64, 4, 4), ``w6`` (10, 256) (the source's
matrix :math:`W^6`), biases one value per output unit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

Params = dict[str, np.ndarray]

NAMES = ("w1", "b1", "w3", "b3", "w5", "b5", "w6", "b6")
SHAPES = {"w1": (32, 5, 5), "b1": (32,), "w3": (64, 32, 5, 5), "b3": (64,),
          "w5": (256, 64, 4, 4), "b5": (256,), "w6": (10, 256), "b6": (10,)}
# Where each parameter lives in the Caffe net of fetal_biometry.nets.spec: (layer, blob index).
CAFFE_PARAMS = {"w1": ("c1", 0), "b1": ("c1", 1), "w3": ("c3", 0), "b3": ("c3", 1),
                "w5": ("f5", 0), "b5": ("f5", 1), "w6": ("out", 0), "b6": ("out", 1)}
# The activations that Caffe's blobs of the same name hold after a forward pass.
CAFFE_BLOBS = {"h1": "c1", "h2": "p2", "h3": "c3", "h4": "p4", "h5": "f5", "h6": "out"}


# --- Activations -----------------------------------------------------------------------------

def g(x: np.ndarray) -> np.ndarray:
    """ReLU, :math:`g(x) = \\max(0, x)`."""
    return np.maximum(x, 0)


def g_prime(x: np.ndarray) -> np.ndarray:
    """:math:`g'(x) = 1` for :math:`0 \\le x`, 0 otherwise, as the source writes it."""
    return (x >= 0).astype(x.dtype)


def f(x: np.ndarray) -> np.ndarray:
    """Output activation: the identity, since the Caffe net has none on ``out``."""
    return x


def f_prime(x: np.ndarray) -> np.ndarray:
    """:math:`f'(x) = 1`."""
    return np.ones_like(x)


# --- Forward pass ----------------------------------------------------------------------------

def patches(h: np.ndarray, size: int = 5) -> np.ndarray:
    """Every ``size`` x ``size`` patch of the last two axes, as a view.

    ``patches(h)[..., m, n, :, :]`` is the source's :math:`h(m + 3, n + 3)` (1-based centres):
    the patch whose top-left corner is ``(m, n)``.
    """
    return sliding_window_view(h, (size, size), axis=(-2, -1))


def correlate(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:math:`\\sum_j w_{i,j} * h_j(m, n)` for every output map ``i``: valid cross-correlation.

    ``h`` is (K, J, H, W), ``w`` is (I, J, p, q); the result is (K, I, H - p + 1, W - q + 1).
    """
    return np.einsum("kjmnpq,ijpq->kimn", patches(h, w.shape[-1]), w, optimize=True)


def layer1(h0: np.ndarray, w1: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C1, 32 maps of 24x24 (``i = 1..32``, ``m, n = 1..24``).

    .. math:: h^1_{i,(m,n)} = g(w^1_i * h^0(m+2, n+2) + b^1_i)

    Returns the pre-activation :math:`z^1` (needed for :math:`g'`) and :math:`h^1`, (K, 32, 24, 24).
    """
    z1 = correlate(h0[:, None], w1[:, None]) + b1[:, None, None]
    return z1, g(z1)


def max_pool(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling with stride 2, and where each maximum was.

    The source's :math:`P_4` slide came through garbled (its last row lost its max, and every
    max shows only the two entries of one row); this follows the mathematics, as Caffe does:

    .. math:: h^4_{i,(m,n)} = \\max(h^3_{i,(2m-1,2n-1)}, h^3_{i,(2m-1,2n)}, h^3_{i,(2m,2n-1)},
              h^3_{i,(2m,2n)}), \\quad m, n = 1..4.

    Returns
    -------
    pooled : ndarray, shape (K, C, H/2, W/2)
    argmax : ndarray of int8, same shape
        Position of the maximum inside its window, ``2 * row + column`` ("Feed forward pass
        시 저장!": saved here, used by :func:`unpool` to route the gradient back). On ties the
        first in row-major order wins, as in Caffe.
    """
    K, C, H, W = h.shape
    windows = h.reshape(K, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(K, C, H // 2, W // 2, 4)
    argmax = windows.argmax(axis=-1).astype(np.int8)
    return np.take_along_axis(windows, argmax[..., None].astype(np.intp), -1)[..., 0], argmax


def layer2(h1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P2: :math:`h^2 = P_2(h^1)`, (K, 32, 12, 12), with its argmax."""
    return max_pool(h1)


def layer3(h2: np.ndarray, w3: np.ndarray, b3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C3, 64 maps of 8x8 (``i = 1..64``), each summing over the 32 maps of P2.

    .. math:: h^3_{i,(m,n)} = g(\\sum_{j=1}^{32} w^3_{i,j} * h^2_j(m+2, n+2) + b^3_i)

    Returns :math:`z^3` and :math:`h^3`, (K, 64, 8, 8).
    """
    z3 = correlate(h2, w3) + b3[:, None, None]
    return z3, g(z3)


def layer4(h3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P4: :math:`h^4 = P_4(h^3)`, (K, 64, 4, 4), with its argmax."""
    return max_pool(h3)


def layer5(h4: np.ndarray, w5: np.ndarray, b5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F5: :math:`h^5_i = g(w^5_i \\cdot h^4 + b^5_i)`, ``i = 1..256``.

    :math:`w^5_i` is 64 maps of 4x4, so the dot product runs over channel, row and column.
    Returns :math:`z^5` and :math:`h^5`, (K, 256).
    """
    z5 = np.einsum("icmn,kcmn->ki", w5, h4, optimize=True) + b5
    return z5, g(z5)


def layer6(h5: np.ndarray, W6: np.ndarray, b6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output: :math:`h^6_i = f(w^6_i \\cdot h^5 + b^6_i)`, ``i = 1..10``: :math:`o = h^6`, (K, 10).

    The output slide applies :math:`g` here, but its gradient slides use :math:`f`; the Caffe net
    has no activation on its output, so :math:`f` is the identity.
    """
    z6 = h5 @ W6.T + b6
    return z6, f(z6)


class Forward(NamedTuple):
    """Everything the backward pass needs: activations, pre-activations, pooling argmaxes."""

    h0: np.ndarray
    z1: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    argmax2: np.ndarray
    z3: np.ndarray
    h3: np.ndarray
    h4: np.ndarray
    argmax4: np.ndarray
    z5: np.ndarray
    h5: np.ndarray
    z6: np.ndarray
    h6: np.ndarray


def forward(params: Params, x: np.ndarray) -> Forward:
    """The feed-forward pass of images ``x`` (K, 28, 28): :math:`h^0 = x`, then layers 1-6."""
    h0 = x
    z1, h1 = layer1(h0, params["w1"], params["b1"])
    h2, argmax2 = layer2(h1)
    z3, h3 = layer3(h2, params["w3"], params["b3"])
    h4, argmax4 = layer4(h3)
    z5, h5 = layer5(h4, params["w5"], params["b5"])
    z6, h6 = layer6(h5, params["w6"], params["b6"])
    return Forward(h0, z1, h1, h2, argmax2, z3, h3, h4, argmax4, z5, h5, z6, h6)


def error(o: np.ndarray, T: np.ndarray) -> float:
    """:math:`E(W) = \\frac12 \\sum_k \\|o(x[k]) - T[k]\\|^2` (a sum over samples, not a mean)."""
    return 0.5 * float(((o - T) ** 2).sum())


# --- Backward pass: the source's gradients ---------------------------------------------------

def delta6(h6: np.ndarray, T: np.ndarray, z6: np.ndarray) -> np.ndarray:
    """The factor shared by every gradient: the output error times :math:`f'`.

    .. math:: \\partial E / \\partial z^6_{k,i} = (f(w^6_i h^5_k + b^6_i) - T_i[k])
              \\, f'(w^6_i h^5_k + b^6_i)
    """
    return (h6 - T) * f_prime(z6)


def grad_w6(d6: np.ndarray, h5: np.ndarray) -> np.ndarray:
    """Gradient of the output weights, (10, 256).

    .. math:: \\partial E / \\partial w^6_i = \\sum_k (f(w^6_i h^5_k + b^6_i) - T_i[k])
              \\, f'(w^6_i h^5_k + b^6_i) \\, h^5_k
    """
    return np.einsum("ki,kj->ij", d6, h5)


def grad_b6(d6: np.ndarray) -> np.ndarray:
    """:math:`\\partial E / \\partial b^6_i = \\sum_k (f(\\cdot) - T_i[k]) f'(\\cdot)`."""
    return d6.sum(axis=0)


def grad_h5(d6: np.ndarray, W6: np.ndarray) -> np.ndarray:
    """The error reaching F5 from all 10 outputs, (K, 256).

    .. math:: \\partial E / \\partial h^5_{k,i} = \\sum_l (f(w^6_l h^5_k + b^6_l) - T_l[k])
              \\, f'(w^6_l h^5_k + b^6_l) \\, w^6_{l,i}

    The source's :math:`\\partial E / \\partial w^5_i` line writes :math:`w^6_i`, :math:`b^6_i`,
    :math:`T_i[k]` inside :math:`\\sum_l`; they must carry the summed index :math:`l`, as its
    :math:`\\partial E / \\partial b^5_i` line has them.
    """
    return d6 @ W6


def through_relu(grad_h: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:math:`\\partial E / \\partial z = \\partial E / \\partial h \\; g'(z)`.

    "활성화된 노드를 통해서만 반응이 역전파": only active nodes pass the error back.
    """
    return grad_h * g_prime(z)


def grad_w5(d5: np.ndarray, h4: np.ndarray) -> np.ndarray:
    """Gradient of the F5 weights.

    .. math:: \\partial E / \\partial w^5_i = \\sum_k \\Big[\\sum_l (f(\\cdot) - T_l[k]) f'(\\cdot)
              \\, w^6_{l,i}\\Big] g'(w^5_i h^4_k + b^5_i) \\, h^4_k

    ``d5`` is :math:`\\partial E / \\partial z^5` (:func:`grad_h5` through :func:`through_relu`);
    the result is (256, 64, 4, 4), like :math:`w^5`.
    """
    return np.einsum("ki,kcmn->icmn", d5, h4, optimize=True)


def grad_b5(d5: np.ndarray) -> np.ndarray:
    """Gradient of the F5 biases.

    .. math:: \\partial E / \\partial b^5_i = \\sum_k \\Big[\\sum_l (f(\\cdot) - T_l[k]) f'(\\cdot)
              \\, w^6_{l,i}\\Big] g'(w^5_i h^4_k + b^5_i)

    The source writes :math:`g'(w^5_l h^4_k + b^5_l)` and ends its chain rule in
    :math:`\\partial h^5_{k,i} / \\partial w^5_{k,i}`; the unit is :math:`i` and the variable
    :math:`b^5_i`.
    """
    return d5.sum(axis=0)


def grad_h4(d5: np.ndarray, w5: np.ndarray) -> np.ndarray:
    """The error reaching P4 from all 256 F5 units, (K, 64, 4, 4).

    .. math:: \\partial E / \\partial h^4_k = \\sum_i \\partial E / \\partial z^5_{k,i} \\; w^5_i

    The source's P-layer slide sums over :math:`l` with :math:`g'(w^5_l \\dots) w^5_l` and an extra
    :math:`\\sum_k`; mathematically each sample's :math:`h^4_k` collects from every F5 unit, and
    no other sample.
    """
    return np.einsum("ki,icmn->kcmn", d5, w5, optimize=True)


def unpool(grad_pooled: np.ndarray, argmax: np.ndarray) -> np.ndarray:
    """Pooling backwards, through the saved argmax.

    .. math:: \\frac{\\partial E}{\\partial h^3} = \\frac{\\partial E}{\\partial h^4}
              \\frac{\\partial h^4}{\\partial h^3}

    The derivative of max is 1 at the saved argmax and 0 elsewhere, so each pooled gradient
    goes back to the one input that won its window.
    """
    K, C, H, W = grad_pooled.shape
    winner = argmax[..., None] == np.arange(4)
    windows = np.where(winner, grad_pooled[..., None], 0).reshape(K, C, H, W, 2, 2)
    return windows.transpose(0, 1, 2, 4, 3, 5).reshape(K, C, 2 * H, 2 * W)


def grad_w3(d3: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Gradient of the C3 kernels.

    .. math:: \\frac{\\partial E}{\\partial w^3_{i,j,(p,q)}} = \\sum_k \\sum_{1 \\le m,n \\le 8}
              \\frac{\\partial E}{\\partial z^3_{k,i,(m,n)}} \\; h^2_{k,j,(m+p-1, n+q-1)}

    The source names the kernel position :math:`(k, l)`, reusing the :math:`k` of the sample
    sum: :math:`(p, q)` here. Its factor :math:`\\partial E / \\partial h^3` has to include the
    ReLU's :math:`g'(z^3)`, i.e. be :math:`\\partial E / \\partial z^3` (``d3``), and its
    :math:`h^2_j` belongs to sample :math:`k`. Result (64, 32, 5, 5): each :math:`h^2_j`
    correlated with the error map ``d3[:, i]``.
    """
    size = h2.shape[-1] - d3.shape[-1] + 1
    return np.einsum("kimn,kjmnpq->ijpq", d3, patches(h2, size), optimize=True)


def grad_b3(d3: np.ndarray) -> np.ndarray:
    """Gradient of the C3 biases.

    .. math:: \\partial E / \\partial b^3_i
              = \\sum_k \\sum_{m,n} \\partial E / \\partial z^3_{k,i,(m,n)}
    """
    return d3.sum(axis=(0, 2, 3))


def grad_h2(d3: np.ndarray, w3: np.ndarray) -> np.ndarray:
    """The error reaching P2 through the C3 kernels, (K, 32, 12, 12).

    .. math:: \\frac{\\partial E}{\\partial h^2_{k,j,(u,v)}} = \\sum_i \\sum_{p,q}
              \\frac{\\partial E}{\\partial z^3_{k,i,(u-p+1, v-q+1)}} \\; w^3_{i,j,(p,q)}

    The step from C3 to P2 that the source shows only as a picture: every :math:`h^2` pixel
    fed every 8x8 output it lay under. That sum is a "full" correlation of the zero-padded
    error maps with the flipped kernels. Result (K, 32, 12, 12).
    """
    size = w3.shape[-1]
    padded = np.pad(d3, ((0, 0), (0, 0), (size - 1, size - 1), (size - 1, size - 1)))
    return np.einsum("kiuvpq,ijpq->kjuv", patches(padded, size), w3[:, :, ::-1, ::-1],
                     optimize=True)


def grad_w1(d1: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """Gradient of the C1 kernels.

    .. math:: \\frac{\\partial E}{\\partial w^1_{i,(p,q)}} = \\sum_k \\sum_{1 \\le m,n \\le 24}
              \\frac{\\partial E}{\\partial z^1_{k,i,(m,n)}} \\; h^0_{k,(m+p-1,n+q-1)}

    The C3 formula one layer down, with a single input map. Result (32, 5, 5).
    """
    return grad_w3(d1, h0[:, None])[:, 0]


def grad_b1(d1: np.ndarray) -> np.ndarray:
    """Gradient of the C1 biases.

    .. math:: \\partial E / \\partial b^1_i
              = \\sum_k \\sum_{m,n} \\partial E / \\partial z^1_{k,i,(m,n)}
    """
    return grad_b3(d1)


def backward(params: Params, fw: Forward, T: np.ndarray) -> Params:
    """:math:`\\nabla_W E` for the samples of one forward pass, output layer first."""
    d6 = delta6(fw.h6, T, fw.z6)
    d5 = through_relu(grad_h5(d6, params["w6"]), fw.z5)
    d3 = through_relu(unpool(grad_h4(d5, params["w5"]), fw.argmax4), fw.z3)
    d1 = through_relu(unpool(grad_h2(d3, params["w3"]), fw.argmax2), fw.z1)
    return {"w1": grad_w1(d1, fw.h0), "b1": grad_b1(d1),
            "w3": grad_w3(d3, fw.h2), "b3": grad_b3(d3),
            "w5": grad_w5(d5, fw.h4), "b5": grad_b5(d5),
            "w6": grad_w6(d6, fw.h5), "b6": grad_b6(d6)}


def gradients(params: Params, x: np.ndarray, T: np.ndarray,
              chunk: int = 250) -> tuple[float, Params]:
    """:math:`E(W)` and :math:`\\nabla_W E` over all samples of ``x``, ``chunk`` samples at a time.

    Both are sums over :math:`k`, so chunks simply add up; chunking bounds the memory of the
    convolution patches.
    """
    total_error, total = 0.0, {name: np.zeros_like(params[name]) for name in NAMES}
    for start in range(0, len(x), chunk):
        fw = forward(params, x[start:start + chunk])
        total_error += error(fw.h6, T[start:start + chunk])
        for name, grad in backward(params, fw, T[start:start + chunk]).items():
            total[name] += grad
    return total_error, total


def descend(params: Params, grads: Params, eta: float) -> Params:
    """One gradient-descent step, :math:`W \\leftarrow W - \\eta \\nabla_W E`."""
    return {name: params[name] - eta * grads[name] for name in NAMES}


# --- Initialisation, training, prediction ----------------------------------------------------

def initialize(rng: np.random.Generator, dtype=np.float32) -> Params:
    """Caffe's "xavier" filler (uniform, variance 1 / fan-in) for weights, zero biases.

    The same fillers as the Caffe net in :mod:`fetal_biometry.nets.spec`.
    """
    params = {}
    for name in NAMES:
        shape = SHAPES[name]
        if name.startswith("w"):
            limit = np.sqrt(3.0 / np.prod(shape[1:]))
            params[name] = rng.uniform(-limit, limit, shape).astype(dtype)
        else:
            params[name] = np.zeros(shape, dtype)
    return params


def predict(params: Params, x: np.ndarray, chunk: int = 500) -> np.ndarray:
    """Digit of largest output for each image."""
    return np.concatenate([forward(params, x[s:s + chunk]).h6.argmax(axis=1)
                           for s in range(0, len(x), chunk)])


def total_error(params: Params, x: np.ndarray, T: np.ndarray, chunk: int = 500) -> float:
    """:math:`E(W)` over all of ``x``, forward passes only."""
    return sum(error(forward(params, x[s:s + chunk]).h6, T[s:s + chunk])
               for s in range(0, len(x), chunk))


def train(params: Params, x: np.ndarray, T: np.ndarray, eta: float, epochs: int,
          batch_size: int | None = None, seed: int = 0,
          progress: bool = False) -> tuple[Params, list[float]]:
    """Plain gradient descent, :math:`W \\leftarrow W - \\eta \\nabla_W E`, no momentum.

    Parameters
    ----------
    params : dict
        Starting weights (not modified).
    x, T : ndarray
        Images (K, 28, 28) and one-hot targets (K, 10).
    eta : float
        Learning rate. :math:`E` sums over the samples of a step, so each sample's error
        moves the weights by ``eta`` times its gradient whatever the batch size.
    epochs : int
        Passes over the training set.
    batch_size : int, optional
        Samples per step. ``None``: all of them, one step per epoch on the source's
        :math:`E(W)` over the whole set. Smaller: the same rule on part of the sum (stochastic
        gradient descent), the samples in a fresh random order every epoch.
    seed : int
        Seeds the order of the samples.
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    params : dict
    history : list of float
        :math:`E(W)` over the whole training set before training and after every epoch.
    """
    rng = np.random.default_rng(seed)
    batch_size = batch_size or len(x)
    steps_per_epoch = -(-len(x) // batch_size)
    history = [total_error(params, x, T)]
    with tqdm(total=epochs * steps_per_epoch, desc="gradient descent", unit="step",
              disable=not progress) as bar:
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                params = descend(params, gradients(params, x[batch], T[batch])[1], eta)
                bar.update()
            history.append(total_error(params, x, T))
            bar.set_postfix(E=f"{history[-1]:.1f}")
    return params, history


# --- Caffe interchange -----------------------------------------------------------------------

def load_into_caffe(params: Params, net) -> None:
    """Copy the parameters into a ``caffe.Net`` built from ``nets.tutorial_cnn_inputs``.

    Only the layouts differ: ``w1`` gains Caffe's input-channel axis, and ``w5`` flattens to
    (256, 1024) in C order, the order in which InnerProduct reads :math:`h^4`.
    """
    for name, (layer, index) in CAFFE_PARAMS.items():
        blob = net.params[layer][index]
        blob.data[...] = np.asarray(params[name]).reshape(blob.data.shape)


def from_caffe(net, attribute: str = "data") -> Params:
    """The net's parameters (``attribute="data"``) or their gradients (``"diff"``) as a dict."""
    return {name: getattr(net.params[layer][index], attribute).reshape(SHAPES[name]).copy()
            for name, (layer, index) in CAFFE_PARAMS.items()}


# --- Checks: finite differences, and Caffe ---------------------------------------------------

def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """:math:`\\max |a - b| / \\max(|a|, |b|)`: the worst error, relative to the array's scale.

    Elementwise ratios would blow up on entries that are zero up to rounding, which every
    gradient here has (dead ReLUs, pooling losers).
    """
    scale = max(np.abs(a).max(), np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else 0.0


def finite_difference(params: Params, x: np.ndarray, T: np.ndarray, name: str,
                      index: tuple[int, ...], step: float = 1e-6) -> float:
    """Central difference :math:`(E(W + s e) - E(W - s e)) / 2s` along one weight."""
    shifted = {key: value.astype(np.float64) for key, value in params.items()}
    x, T = x.astype(np.float64), T.astype(np.float64)
    original = shifted[name][index]
    shifted[name][index] = original + step
    plus = total_error(shifted, x, T)
    shifted[name][index] = original - step
    minus = total_error(shifted, x, T)
    return (plus - minus) / (2 * step)


def random_params(rng: np.random.Generator, bias_scale: float = 0.1) -> Params:
    """Xavier weights and random nonzero biases, exactly representable in float32.

    Nonzero biases keep every pre-activation off exactly 0, where the source's :math:`g'(0) = 1`
    and Caffe's ReLU (no gradient at 0) disagree; float32 values make NumPy (float64) and Caffe
    (float32) start from the very same weights.
    """
    params = initialize(rng, np.float64)
    for name in ("b1", "b3", "b5", "b6"):
        params[name] = rng.normal(0.0, bias_scale, SHAPES[name])
    return {name: value.astype(np.float32).astype(np.float64) for name, value in params.items()}


def caffe_net(batch_size: int, folder):
    """The Caffe net of :func:`fetal_biometry.nets.spec.tutorial_cnn_inputs` (squared error), in
    TRAIN phase, its prototxt written into ``folder``."""
    import pathlib

    from fetal_biometry.nets import checks, spec as nets

    path = nets.save(nets.tutorial_cnn_inputs(batch_size, "euclidean"),
                     pathlib.Path(folder) / "tutorial_cnn.prototxt")
    return checks.net(path, phase="train", kind="train")


def feed_caffe(net, params: Params, x: np.ndarray, T: np.ndarray) -> None:
    """Load the weights and one batch (``data`` (N, 1, 28, 28), ``target`` (N, 10)) into ``net``."""
    load_into_caffe(params, net)
    net.blobs["data"].data[...] = x[:, None]
    net.blobs["target"].data[...] = T


def caffe_forward_backward(net, params: Params, x: np.ndarray,
                           T: np.ndarray) -> tuple[dict[str, np.ndarray], Params]:
    """Caffe's activations :math:`h^1 .. h^6` and its gradients, rescaled to the source's E.

    Caffe's EuclideanLoss is :math:`\\frac{1}{2N} \\sum_k \\|o_k - T_k\\|^2`, the mean over the N
    samples of the batch; the source's :math:`E` is the sum. So Caffe's gradients are
    :math:`\\nabla E / N`, and are multiplied by N here.
    """
    feed_caffe(net, params, x, T)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    activations = {h: net.blobs[blob].data.copy() for h, blob in CAFFE_BLOBS.items()}
    grads = {name: len(x) * value for name, value in from_caffe(net, "diff").items()}
    return activations, grads


def caffe_sgd_step(params: Params, x: np.ndarray, T: np.ndarray, base_lr: float,
                   folder) -> Params:
    """One iteration of Caffe's SGD solver (momentum 0, weight decay 0, fixed rate) from ``params``.

    Caffe takes :math:`W \\leftarrow W - \\text{base\\_lr} \\cdot \\nabla E / N` (its loss is the
    batch mean), which is the source's step with :math:`\\eta = \\text{base\\_lr} / N`.
    """
    import pathlib

    from fetal_biometry.nets import checks, solvers, spec as nets

    folder = pathlib.Path(folder)
    net_path = nets.save(nets.tutorial_cnn_inputs(len(x), "euclidean"),
                         folder / "tutorial_cnn.prototxt")
    solver_path = solvers.save(
        solvers.sgd(str(net_path.resolve()), base_lr, momentum=0.0, weight_decay=0.0,
                    lr_policy="fixed", max_iter=1, snapshot_prefix=str(folder / "snapshot")),
        folder / "tutorial_sgd.prototxt")
    solver = checks.solver(solver_path)
    feed_caffe(solver.net, params, x, T)
    solver.step(1)
    return from_caffe(solver.net, "data")
