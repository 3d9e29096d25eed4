"""Caffe nets of the project, generated with ``caffe.NetSpec``.

The tutorial's CNN is exactly::

    Input 1@28x28 - C1 32@24x24 (5x5 conv) - P2 32@12x12 (2x2 max) - C3 64@8x8 (5x5)
    - P4 64@4x4 - F5 256 - output 10

with ReLU after C1, C3 and F5 (``g(x) = max(0, x)``) and no activation on the output (the
source's ``f`` is the identity in this net). Layer and blob names follow the source: ``c1``,
``p2``, ``c3``, ``p4``, ``f5``, ``out``; ReLUs work in place, so after a forward pass the blobs
``c1``, ``c3`` and ``f5`` hold ``h^1``, ``h^3`` and ``h^5``.

Every builder returns a ``caffe_pb2.NetParameter``; :func:`save` writes it as prototxt that both
pycaffe and the ``caffe`` binary read.
"""
from __future__ import annotations

import pathlib

from fetal_biometry import atomic
from fetal_biometry.caffe_env import caffe
from fetal_biometry.patches import encoding as patches

LOSSES = ("softmax", "euclidean")

# The source's count of unknowns: (5*5+1)*32 + (5*5*32+1)*64 + (4*4*64+1)*256 + (256+1)*10.
TUTORIAL_PARAMETERS = 26 * 32 + 801 * 64 + 1025 * 256 + 257 * 10


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


KERNEL, POOL = 5, 2  # the body's convolution kernels and 2x2 poolings
STRIDE = POOL * POOL  # a fully convolutional body scores a patch every 4 pixels


def pooled_side(patch: int) -> int:
    """Side of ``p4`` for a ``patch`` x ``patch`` input, as Caffe computes it (pooling rounds up)."""
    side = patch
    for _ in range(2):
        side = -(-(side - KERNEL + 1 - POOL) // POOL) + 1
    return side


def _cnn_body(n, data, classes: int = 10, dense_patch: int | None = None) -> None:
    """Add C1 .. output on top of ``data`` to the NetSpec ``n``.

    The same layers serve the fetal patch classifier: on 48x48 patches they give 32@44x44,
    32@22x22, 64@18x18, 64@9x9, 256 and one output per class. With ``dense_patch`` the two
    inner products are the equivalent convolutions (``f5`` a kernel covering the whole ``p4``
    map of a ``dense_patch`` patch, ``out`` 1x1): the same net, fully convolutional, with blobs
    of the same names and the same number of weights.
    """
    L, P = caffe().layers, caffe().params
    weights = dict(weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.c1 = L.Convolution(data, kernel_size=KERNEL, num_output=32, **weights)
    n.relu1 = L.ReLU(n.c1, in_place=True)
    n.p2 = L.Pooling(n.c1, pool=P.Pooling.MAX, kernel_size=POOL, stride=POOL)
    n.c3 = L.Convolution(n.p2, kernel_size=KERNEL, num_output=64, **weights)
    n.relu3 = L.ReLU(n.c3, in_place=True)
    n.p4 = L.Pooling(n.c3, pool=P.Pooling.MAX, kernel_size=POOL, stride=POOL)
    if dense_patch is None:
        n.f5 = L.InnerProduct(n.p4, num_output=256, **weights)
        n.relu5 = L.ReLU(n.f5, in_place=True)
        n.out = L.InnerProduct(n.f5, num_output=classes, **weights)
    else:
        n.f5 = L.Convolution(n.p4, kernel_size=pooled_side(dense_patch), num_output=256, **weights)
        n.relu5 = L.ReLU(n.f5, in_place=True)
        n.out = L.Convolution(n.f5, kernel_size=1, num_output=classes, **weights)


def _tutorial_loss(n, loss: str, truth) -> None:
    """Loss of ``out`` against ``truth``: digit labels (softmax) or one-hot targets."""
    L = caffe().layers
    if loss == "softmax":
        n.loss = L.SoftmaxWithLoss(n.out, truth)
    else:
        # The source's E(W) = 1/2 sum_k ||o(x[k]) - T[k]||^2; Caffe divides by the batch size.
        n.loss = L.EuclideanLoss(n.out, truth)


def tutorial_cnn_inputs(batch_size: int, loss: str = "euclidean"):
    """The tutorial CNN fed by ``Input`` layers, for pycaffe code that fills the blobs itself.

    Blobs: ``data`` (N, 1, 28, 28), and ``target`` (N, 10) for the squared error or ``label``
    (N,) for softmax; the loss layer is named ``loss``.
    """
    _check_loss(loss)
    L = caffe().layers
    n = caffe().NetSpec()
    n.data = L.Input(shape=dict(dim=[batch_size, 1, 28, 28]))
    if loss == "softmax":
        n.label = L.Input(shape=dict(dim=[batch_size]))
    else:
        n.target = L.Input(shape=dict(dim=[batch_size, 10]))
    _cnn_body(n, n.data)
    _tutorial_loss(n, loss, n.label if loss == "softmax" else n.target)
    return n.to_proto()


def _lmdb_data(source: str, batch_size: int, scale: float, ntop: int):
    L = caffe().layers
    return L.Data(source=source, backend=caffe().params.Data.LMDB, batch_size=batch_size,
                  transform_param=dict(scale=scale), ntop=ntop)


def tutorial_cnn(lmdb: str, batch_size: int = 64, loss: str = "softmax",
                 targets: str | None = None):
    """The tutorial CNN reading MNIST from LMDB, with its loss and an accuracy layer.

    As in BVLC's LeNet NetSpec example, training and testing use two nets built by this
    function (one per LMDB), named by the solver's ``train_net`` and ``test_net``.

    Parameters
    ----------
    lmdb : str
        LMDB of uint8 28x28 images with their digit labels (scaled by 1/256 on the way in,
        which reproduces the ``k / 256`` gray levels of the MNIST pickle).
    batch_size : int
        Images per iteration.
    loss : {'softmax', 'euclidean'}
        Softmax cross-entropy, or the source's squared error against one-hot targets.
    targets : str, optional
        For the squared error: an LMDB of one-hot float targets aligned record for record with
        ``lmdb`` (Caffe has no one-hot layer; two Data layers reading in the same order with
        the same batch size stay in step).
    """
    _check_loss(loss)
    if loss == "euclidean" and not targets:
        raise ValueError("the squared-error net needs a targets LMDB")
    n = caffe().NetSpec()
    n.data, n.label = _lmdb_data(lmdb, batch_size, 1 / 256, 2)
    if loss == "euclidean":
        n.target = _lmdb_data(targets, batch_size, 1.0, 1)
    _cnn_body(n, n.data)
    _tutorial_loss(n, loss, n.label if loss == "softmax" else n.target)
    n.accuracy = caffe().layers.Accuracy(n.out, n.label)
    return n.to_proto()


def tutorial_cnn_deploy(batch_size: int = 1):
    """Deploy net: ``Input`` data, the CNN, and a ``prob`` softmax."""
    L = caffe().layers
    n = caffe().NetSpec()
    n.data = L.Input(shape=dict(dim=[batch_size, 1, 28, 28]))
    _cnn_body(n, n.data)
    n.prob = L.Softmax(n.out)
    return n.to_proto()


def patch_classifier(lmdb: str, batch_size: int = 64, classes: int = 5):
    """The fetal patch classifier reading patches from LMDB, with softmax loss and accuracy.

    It is the tutorial's CNN with one output per class (scores in blob ``out``). The patch
    carries the beam direction in whatever encoding the LMDB was made with (rotated so
    the beam runs top to bottom, extra direction channels, or none): the net adapts to the
    channels it reads. Classes: background, amniotic fluid, stomach bubble, umbilical vein,
    shadowing artifact.
    """
    n = caffe().NetSpec()
    n.data, n.label = _lmdb_data(lmdb, batch_size, patches.INPUT_SCALE, 2)
    _cnn_body(n, n.data, classes)
    n.loss = caffe().layers.SoftmaxWithLoss(n.out, n.label)
    n.accuracy = caffe().layers.Accuracy(n.out, n.label)
    return n.to_proto()


def patch_classifier_deploy(channels: int, patch: int = patches.SIZE, classes: int = 5, batch_size: int = 1):
    """Deploy version: ``Input`` patches (already scaled), ``prob`` softmax."""
    n = caffe().NetSpec()
    n.data = caffe().layers.Input(shape=dict(dim=[batch_size, channels, patch, patch]))
    _cnn_body(n, n.data, classes)
    n.prob = caffe().layers.Softmax(n.out)
    return n.to_proto()


def patch_classifier_dense(channels: int, height: int, width: int, patch: int = patches.SIZE,
                           classes: int = 5, batch_size: int = 1):
    """The deploy net made fully convolutional over (channels, height, width) inputs.

    Output ``prob`` (N, classes, h, w): the patch net's probabilities for the patches whose
    top-left corners are every :data:`STRIDE` pixels of the input. Weights of
    :func:`patch_classifier_deploy` fit it after a reshape (:func:`fetal_biometry.inference.dense.transplant`).
    """
    n = caffe().NetSpec()
    n.data = caffe().layers.Input(shape=dict(dim=[batch_size, channels, height, width]))
    _cnn_body(n, n.data, classes, dense_patch=patch)
    n.prob = caffe().layers.Softmax(n.out, axis=1)
    return n.to_proto()


# --------------------------------------------------------------------------- the segmenter

#: The segmenter's U-Net: poolings (depth) and channels of its first level (width), the
#: measured starting point (0.77 G multiply-adds for a 256 x 256 input at 8 channels).
UNET_DEPTH, UNET_WIDTH = 4, 8
#: Loss layers the segmenter may train with: class-weighted (InfogainLoss with a diagonal H,
#: the weights in the records folder) or plain SoftmaxWithLoss.
BALANCES = ("infogain", "none")


def unet_multiple(depth: int = UNET_DEPTH) -> int:
    """Input sides must be multiples of this (each pooling halves them exactly)."""
    return 2 ** depth


def _unet_body(n, data, classes: int, depth: int, width: int) -> None:
    """Add a U-Net on ``data`` to the NetSpec ``n``; scores (N, classes, H, W) in blob ``out``.

    Level ``i`` has ``width * 2**i`` channels: two padded 3x3 convolutions with ReLU
    (``enc{i}a``, ``enc{i}b``), then a 2x2 max pooling (``pool{i}``); after ``depth`` poolings
    the bottom level; back up, a 2x2 stride-2 Deconvolution (``up{i}``, with ReLU) halves the
    channels and doubles the side, a Concat (``cat{i}``) joins the encoder's features of the same
    level, and two more convolutions (``dec{i}a``, ``dec{i}b``) follow. A 1x1 convolution gives one
    score per class. Padded convolutions keep every side, so no Crop is needed, as long as
    the input's sides are multiples of :func:`unet_multiple`.
    """
    L, P = caffe().layers, caffe().params
    weights = dict(weight_filler=dict(type="msra"), bias_filler=dict(type="constant"))

    def pair(bottom, name: str, channels: int):
        first = L.Convolution(bottom, kernel_size=3, pad=1, num_output=channels, **weights)
        setattr(n, f"{name}a", first)
        setattr(n, f"relu_{name}a", L.ReLU(first, in_place=True))
        second = L.Convolution(first, kernel_size=3, pad=1, num_output=channels, **weights)
        setattr(n, f"{name}b", second)
        setattr(n, f"relu_{name}b", L.ReLU(second, in_place=True))
        return second

    skips, top = [], data
    for level in range(depth):
        skips.append(pair(top, f"enc{level}", width * 2 ** level))
        top = L.Pooling(skips[-1], pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, f"pool{level}", top)
    top = pair(top, f"enc{depth}", width * 2 ** depth)
    for level in reversed(range(depth)):
        channels = width * 2 ** level
        up = L.Deconvolution(top, convolution_param=dict(kernel_size=2, stride=2, num_output=channels,
                                                          **weights))
        setattr(n, f"up{level}", up)
        setattr(n, f"relu_up{level}", L.ReLU(up, in_place=True))
        joined = L.Concat(skips[level], up)
        setattr(n, f"cat{level}", joined)
        top = pair(joined, f"dec{level}", channels)
    n.out = L.Convolution(top, kernel_size=1, num_output=classes, **weights)


def segmenter(image_lmdb: str, label_lmdb: str, classes: int = 8,
              batch_size: int = 4, depth: int = UNET_DEPTH, width: int = UNET_WIDTH,
              balance: str = "infogain", infogain: str | None = None):
    """The segmenter's train (or validation) net: two Data layers, the U-Net, its loss, accuracy.

    ``image_lmdb`` holds the (C, T, T) uint8 input tiles (scaled by :data:`INPUT_SCALE`) and
    ``label_lmdb`` the (1, T, T) label tiles of :mod:`fetal_biometry.segment_records`, under the
    same keys: two Data layers with the same batch size read them in step. Pixels labelled
    255 (outside the fan, padding) are ignored, and the loss is normalised by the pixels that
    count (VALID). ``balance``: ``infogain`` weighs each class by the diagonal of the H matrix
    in ``infogain`` (a BlobProto file, the records' class weights); ``none`` is plain
    SoftmaxWithLoss. The Data layer takes the records' channels, whatever the encoding.
    """
    if balance not in BALANCES:
        raise ValueError(f"unknown class balance {balance!r}; choose one of {BALANCES}")
    if balance == "infogain" and not infogain:
        raise ValueError("the infogain balance needs the records' H matrix file")
    L = caffe().layers
    n = caffe().NetSpec()
    n.data = _lmdb_data(image_lmdb, batch_size, patches.INPUT_SCALE, 1)
    n.label = _lmdb_data(label_lmdb, batch_size, 1.0, 1)
    _unet_body(n, n.data, classes, depth, width)
    loss = dict(ignore_label=255, normalization=caffe().params.Loss.VALID)
    if balance == "infogain":
        n.loss = L.InfogainLoss(n.out, n.label, infogain_loss_param=dict(source=infogain, axis=1),
                                loss_param=loss)
    else:
        n.loss = L.SoftmaxWithLoss(n.out, n.label, loss_param=loss)
    n.accuracy = L.Accuracy(n.out, n.label, accuracy_param=dict(ignore_label=255))
    return n.to_proto()


def segmenter_deploy(channels: int, height: int, width_px: int, classes: int = 8,
                     depth: int = UNET_DEPTH, width: int = UNET_WIDTH, batch_size: int = 1):
    """Deploy U-Net: ``Input`` (N, channels, height, width_px) -> ``prob`` (N, classes, H, W).

    The net is fully convolutional: reshape its input to any sides that are multiples of
    :func:`unet_multiple` (``net.blobs['data'].reshape(...)``, ``net.reshape()``).
    """
    multiple = unet_multiple(depth)
    if height % multiple or width_px % multiple:
        raise ValueError(f"U-Net input {width_px}x{height}: sides must be multiples of {multiple}")
    n = caffe().NetSpec()
    n.data = caffe().layers.Input(shape=dict(dim=[batch_size, channels, height, width_px]))
    _unet_body(n, n.data, classes, depth, width)
    n.prob = caffe().layers.Softmax(n.out, axis=1)
    return n.to_proto()


#: Layer types of the segmenter's nets (train and deploy), for allow-lists of nets read from files.
SEGMENTER_LAYER_TYPES = ("Data", "Input", "Convolution", "ReLU", "Pooling", "Deconvolution",
                         "Concat", "InfogainLoss", "SoftmaxWithLoss", "Accuracy", "Softmax")


def count_parameters(net) -> int:
    """Number of learnable values of a ``caffe.Net``."""
    return sum(blob.data.size for blobs in net.params.values() for blob in blobs)


def save(net_param, path: str | pathlib.Path) -> pathlib.Path:
    """Write a NetParameter as prototxt, atomically."""
    return atomic.write_text(path, str(net_param))
