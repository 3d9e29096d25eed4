"""The main job of ``make demo``, stage by stage (run from the repository root)."""
from __future__ import annotations

import pathlib
import time

from fetal_biometry import catalog, mnist, training
from fetal_biometry.caffe_env import caffe, proto


def mnist_lmdbs(root: str = catalog.MNIST) -> None:
    """Write the MNIST LMDBs the checked-in nets read, unless they are there already."""
    for split in mnist.SPLITS:
        images = pathlib.Path(root, f"{split}_lmdb")
        targets = pathlib.Path(root, f"{split}_targets_lmdb")
        if not (images / "data.mdb").is_file() or not (targets / "data.mdb").is_file():
            count = mnist.write_lmdb(split, images, targets)
            print(f"wrote {count} MNIST {split} records to {images}")


def test_accuracy(weights: pathlib.Path, net_path: str, batches: int) -> float:
    """Accuracy of ``weights`` over ``batches`` batches of the test net at ``net_path``."""
    net = caffe().Net(net_path, str(weights), caffe().TEST)
    param = training.read_prototxt(net_path, proto().NetParameter)
    return training.validate(net, param, batches)["accuracy"]


def run(iterations: int = 2000, gpu: int | None = None) -> float:
    """Train the tutorial CNN on MNIST and print its test accuracy."""
    mnist_lmdbs()
    out = pathlib.Path("runs/tutorial_cnn")
    start = time.perf_counter()
    result = training.train("prototxt/tutorial_cnn/solver.prototxt", out, gpu=gpu,
                            max_iter=iterations)
    weights = result.snapshot.with_suffix(".caffemodel")
    accuracy = test_accuracy(weights, "prototxt/tutorial_cnn/test.prototxt", 100)
    print(f"tutorial CNN, Adam, {result.iterations} iterations of 64 images "
          f"({time.perf_counter() - start:.0f} s): MNIST test accuracy {accuracy:.2%} "
          f"on 10,000 images; weights {weights}, curves {out / 'training.png'}")
    return accuracy
