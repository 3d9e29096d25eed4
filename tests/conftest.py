"""Shared fixtures: real Caffe, real LMDBs made from real MNIST, small enough for 2 CPU cores."""
from __future__ import annotations

import os
import pathlib

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_lmdbs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Small MNIST LMDBs (images and one-hot targets): 640 training and 200 test records."""
    from fetal_biometry import mnist

    folder = tmp_path_factory.mktemp("mnist")
    paths = {}
    for split, limit in (("train", 640), ("test", 200)):
        paths[split] = folder / f"{split}_lmdb"
        paths[f"{split}_targets"] = folder / f"{split}_targets_lmdb"
        mnist.write_lmdb(split, paths[split], paths[f"{split}_targets"], limit=limit)
    return paths


@pytest.fixture
def tutorial_solver(tmp_path, mnist_lmdbs):
    """Write a solver (Adam unless ``kind`` says otherwise) for the tutorial CNN on the small LMDBs; returns a factory."""
    from fetal_biometry import nets, solvers

    def make(loss: str = "softmax", max_iter: int = 20, base_lr: float = 1e-3,
             kind: str = "adam", **fields) -> pathlib.Path:
        targets = loss == "euclidean"
        train = nets.save(nets.tutorial_cnn(str(mnist_lmdbs["train"]), 32, loss,
                                            str(mnist_lmdbs["train_targets"]) if targets else None),
                          tmp_path / "train.prototxt")
        test = nets.save(nets.tutorial_cnn(str(mnist_lmdbs["test"]), 50, loss,
                                           str(mnist_lmdbs["test_targets"]) if targets else None),
                         tmp_path / "test.prototxt")
        params = dict(test_iter=[4], test_interval=10, max_iter=max_iter, random_seed=7,
                      snapshot_prefix=str(tmp_path / "snap"))
        params.update(fields)
        return solvers.save(getattr(solvers, kind)(str(train), base_lr, str(test), **params),
                            tmp_path / "solver.prototxt")

    return make
