"""The checked-in prototxt files under ``prototxt/`` and what generates each.

``python tools/make_prototxt.py`` rewrites them all from here; a test fails when a checked-in
file differs from what this module makes now. Paths inside the files (LMDB sources, net files,
snapshot prefixes) are relative to the repository root, Caffe's own convention for its examples:
run ``caffe train`` and the tools from there.
"""
from __future__ import annotations

from google.protobuf import text_format

from fetal_biometry import paths
from fetal_biometry.labels import SEGMENTER_CLASSES
from fetal_biometry.nets import solvers, spec as nets
from fetal_biometry.patches import encoding as patches, scan_encoding, segment_records

def _tutorial_cnn(loss: str) -> dict[str, object]:
    name = "tutorial_cnn" + ("" if loss == "softmax" else "_euclidean")
    folder = str(paths.prototxt_dir(name))
    targets = loss == "euclidean"
    files = {
        f"{folder}/train.prototxt": nets.tutorial_cnn(
            f"{paths.MNIST}/train_lmdb", 64, loss, f"{paths.MNIST}/train_targets_lmdb" if targets else None),
        f"{folder}/val.prototxt": nets.tutorial_cnn(
            f"{paths.MNIST}/val_lmdb", 100, loss, f"{paths.MNIST}/val_targets_lmdb" if targets else None),
        f"{folder}/test.prototxt": nets.tutorial_cnn(
            f"{paths.MNIST}/test_lmdb", 100, loss, f"{paths.MNIST}/test_targets_lmdb" if targets else None),
    }
    common = dict(test_net=f"{folder}/val.prototxt", test_iter=[100], test_interval=500,
                  snapshot=1000, snapshot_prefix=paths.snapshot_prefix(name),
                  max_iter=2000, display=100, random_seed=1)
    if loss == "softmax":
        # Adam on the softmax loss, as the source trained its own classifier; a tenth of the
        # rate for the last 2000 of 5000 iterations takes it past 99 % (make demo stops at 2000).
        solver = solvers.adam(f"{folder}/train.prototxt", 1e-3,
                              **{**common, "max_iter": 5000, "lr_policy": "step",
                                 "stepsize": 3000, "gamma": 0.1})
    else:
        # The tutorial's plain gradient descent on its squared error, W <- W - eta grad E.
        solver = solvers.sgd(f"{folder}/train.prototxt", 0.1, **common)  # 0.5 diverges
    files[f"{folder}/solver.prototxt"] = solver
    return files


#: Adam iterations of the fetal patch classifier (make demo and every experiment train this long).
FETAL_ITERATIONS = 1500


def patch_classifier(folder: str, lmdbs: str, snapshot_prefix: str, random_seed: int = 1,
                     max_iter: int = FETAL_ITERATIONS) -> dict[str, object]:
    """The fetal patch classifier's train and val nets and its solver, as files of ``folder``.

    ``lmdbs`` holds the ``train_lmdb`` and ``val_lmdb`` of :mod:`fetal_biometry.patches.records`.
    The checked-in nets and every experiment's nets (:mod:`fetal_biometry.experiments`) are made
    here, so they differ only in their paths, seed and length.
    """
    files = {f"{folder}/{split}.prototxt": nets.patch_classifier(f"{lmdbs}/{split}_lmdb", batch)
             for split, batch in (("train", 64), ("val", 100))}
    # Adam on the softmax loss, as the source trained its classifier.
    files[f"{folder}/solver.prototxt"] = solvers.adam(
        f"{folder}/train.prototxt", 1e-3, test_net=f"{folder}/val.prototxt", test_iter=[20],
        test_interval=250, max_iter=max_iter, snapshot=500, random_seed=random_seed,
        snapshot_prefix=snapshot_prefix)
    return files


def _patch_classifier(encoding: str) -> dict[str, object]:
    """The checked-in fetal patch classifier for one beam encoding, on tools/make_lmdb.py's LMDBs."""
    name = paths.fetal_name(encoding)
    folder = str(paths.prototxt_dir(name))
    files = patch_classifier(folder, str(paths.patch_lmdbs(encoding)), paths.snapshot_prefix(name))
    files[f"{folder}/deploy.prototxt"] = nets.patch_classifier_deploy(patches.channels(encoding))
    return files


#: Adam iterations of the segmenter (make demo and the experiments train this long).
SEGMENTER_ITERATIONS = 1500
#: Tiles per iteration (4 tiles of 128 x 128 are one 256 x 256 scan's pixels).
SEGMENTER_BATCH = 4


def segmenter(folder: str, records: str, snapshot_prefix: str, random_seed: int = 1,
              max_iter: int = SEGMENTER_ITERATIONS, depth: int = nets.UNET_DEPTH,
              width: int = nets.UNET_WIDTH, balance: str = "infogain",
              batch: int = SEGMENTER_BATCH, val_tiles: int = 64,
              classes: int = len(SEGMENTER_CLASSES)) -> dict[str, object]:
    """The segmenter's train and val nets and its solver, as files of ``folder``.

    ``records`` holds the image and label LMDBs and ``infogain.binaryproto`` of
    :mod:`fetal_biometry.segment_records` of a class table of ``classes`` classes; validation
    reads ``val_tiles`` tiles.
    """
    infogain = f"{records}/{segment_records.INFOGAIN}"
    files = {f"{folder}/{split}.prototxt": nets.segmenter(
        f"{records}/{split}_image_lmdb", f"{records}/{split}_label_lmdb",
        classes, batch, depth, width, balance, infogain)
        for split in ("train", "val")}
    # Adam, as the patch classifier: the same driver, the same optimiser.
    files[f"{folder}/solver.prototxt"] = solvers.adam(
        f"{folder}/train.prototxt", 1e-3, test_net=f"{folder}/val.prototxt",
        test_iter=[max(1, val_tiles // batch)], test_interval=250, max_iter=max_iter, snapshot=500,
        random_seed=random_seed, snapshot_prefix=snapshot_prefix)
    return files


def _segmenter(encoding: str) -> dict[str, object]:
    """The checked-in segmenter for one encoding, on tools/make_segment_records.py's records."""
    name = paths.segmenter_name(encoding)
    folder = str(paths.prototxt_dir(name))
    channels = scan_encoding.channels(encoding)
    files = segmenter(folder, str(paths.segment_records(encoding)), paths.snapshot_prefix(name))
    tile = segment_records.TILE
    files[f"{folder}/deploy.prototxt"] = nets.segmenter_deploy(channels, tile, tile)
    return files


def _deploy() -> dict[str, object]:
    return {f"{paths.prototxt_dir('tutorial_cnn')}/deploy.prototxt": nets.tutorial_cnn_deploy()}


#: Net diagrams under docs/ (drawn by caffe.draw) -> the checked-in net each shows.
DIAGRAMS = {"docs/net_patch_classifier.png": "prototxt/fetal_channels/train.prototxt",
            "docs/net_segmenter.png": "prototxt/segmenter_channels/deploy.prototxt",
            "docs/net_tutorial_cnn.png": "prototxt/tutorial_cnn/train.prototxt"}


def generate() -> dict[str, str]:
    """Every checked-in prototxt: repository-relative path -> text."""
    messages = {**_tutorial_cnn("softmax"), **_tutorial_cnn("euclidean"), **_deploy()}
    for encoding in patches.ENCODINGS:
        messages.update(_patch_classifier(encoding))
    for encoding in scan_encoding.ENCODINGS:
        messages.update(_segmenter(encoding))
    return {path: text_format.MessageToString(m) for path, m in messages.items()}
