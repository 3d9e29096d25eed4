"""Shared fixtures: real Caffe, real LMDBs made from real MNIST, small enough for 2 CPU cores."""
from __future__ import annotations

import os
import pathlib
from typing import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_lmdbs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Small MNIST LMDBs (images and one-hot targets): 640 training and 200 test records."""
    from fetal_biometry.tutorial import mnist

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
    from fetal_biometry.nets import solvers, spec as nets

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


@pytest.fixture(scope="session")
def simulated_dataset(tmp_path_factory) -> Callable[..., pathlib.Path]:
    """The one factory of simulated datasets: ``simulated_dataset(count, seed, shape, probe,
    appearance)`` writes that dataset (with its generator record) once per session and returns
    its folder. Shared between tests: copy it before changing anything in it.

    ``appearance`` names a preset of :data:`fetal_biometry.simulator.PRESETS` (default narrow, the first
    round's scans, on which most tests were written); ``plane`` what the scans show
    (:data:`fetal_biometry.simulator.PLANE_KINDS`).
    """
    from fetal_biometry import simulator
    from fetal_biometry.io import dataset

    made: dict[tuple, pathlib.Path] = {}

    def make(count: int, seed: int, shape: tuple[int, int] = (96, 96), probe: str = "convex",
             appearance: str = "narrow", plane: str = "abdomen") -> pathlib.Path:
        key = (count, seed, tuple(shape), probe, appearance, plane)
        if key not in made:
            look = simulator.PRESETS[appearance]
            path = tmp_path_factory.mktemp("simulated") / "sim"
            dataset.write_dataset(path, simulator.simulate(count, seed, shape, probe, appearance=look, plane=plane),
                                  generator=simulator.generator_record(seed, shape, probe, 0.3, look, plane))
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def fetal_data(simulated_dataset) -> pathlib.Path:
    """Four small simulated scans (96x96, convex): a dataset to train and evaluate on.

    The first round's appearance (NARROW): the tests that use them were written on these
    scans (e.g. the fan of the first one is found from the image alone).
    """
    return simulated_dataset(4, 7)


def train_patch_model(folder: pathlib.Path, data: pathlib.Path, encoding: str) -> pathlib.Path:
    """A model folder of ``encoding`` trained for a few iterations on ``data``, in ``folder``/run."""
    from fetal_biometry.nets import solvers, spec as nets, training
    from fetal_biometry.patches import records as patch_records

    lmdbs = folder / "lmdb"
    patch_records.build(patch_records.dataset_scans(data), lmdbs, encoding,
                        per_class={c: 4 for c in range(5)}, fractions=(0.5, 0.25, 0.25), seed=0)
    train = nets.save(nets.patch_classifier(str(lmdbs / "train_lmdb"), 16), folder / "train.prototxt")
    val = nets.save(nets.patch_classifier(str(lmdbs / "val_lmdb"), 8), folder / "val.prototxt")
    solver = solvers.save(solvers.adam(str(train), 1e-3, str(val), test_iter=[1], test_interval=4,
                                       max_iter=4, random_seed=1,
                                       snapshot_prefix=str(folder / "run/snapshots/net")),
                          folder / "solver.prototxt")
    training.train(solver, folder / "run", progress=False, plot=False)
    return folder / "run"


@pytest.fixture(scope="session")
def fetal_model(tmp_path_factory, fetal_data) -> pathlib.Path:
    """A model folder (channels encoding) trained for a few iterations on ``fetal_data``."""
    return train_patch_model(tmp_path_factory.mktemp("model"), fetal_data, "channels")


def train_segmenter(folder: pathlib.Path, data: pathlib.Path, classes: str = "abdomen") -> pathlib.Path:
    """A model folder of a small segmenter of the class table ``classes`` (U-Net depth 2, width 4,
    channels encoding, 32 px tiles at 2 mm per pixel) trained for a few iterations on ``data``,
    in ``folder``/segmenter_channels."""
    from google.protobuf import text_format

    from fetal_biometry.io import dataset
    from fetal_biometry.nets import catalog, training
    from fetal_biometry.patches import segment_records

    records = folder / "records"
    manifest = segment_records.build(dataset.open(data), records, "channels", spacing_mm=2.0, tile=32,
                                     fractions=(0.5, 0.25, 0.25), seed=0, classes=classes)
    files = catalog.segmenter(str(folder), str(records), str(folder / "segmenter_channels" / "snapshots" / "net"),
                              max_iter=4, depth=2, width=4, batch=2, val_tiles=4,
                              classes=len(manifest["classes"]))
    for path, message in files.items():
        pathlib.Path(path).write_text(text_format.MessageToString(message))
    training.train(folder / "solver.prototxt", folder / "segmenter_channels", progress=False, plot=False)
    return folder / "segmenter_channels"


@pytest.fixture(scope="session")
def segmenter_model(tmp_path_factory, fetal_data) -> pathlib.Path:
    """A small abdomen segmenter (:func:`train_segmenter`) trained on ``fetal_data``."""
    return train_segmenter(tmp_path_factory.mktemp("segmenter"), fetal_data)


@pytest.fixture(scope="session")
def mixed_data(simulated_dataset) -> pathlib.Path:
    """Six small simulated planes (96x96, convex), two each of abdomen, head and femur."""
    return simulated_dataset(6, 3, plane="mixed")


@pytest.fixture(scope="session")
def panel_segmenter_model(tmp_path_factory, mixed_data) -> pathlib.Path:
    """A small segmenter of the class table 'panel' (:func:`train_segmenter`) trained on ``mixed_data``."""
    return train_segmenter(tmp_path_factory.mktemp("panel"), mixed_data, "panel")
