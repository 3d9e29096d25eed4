"""The main job of ``make demo``, stage by stage (run from the repository root).

1. the tutorial's CNN on real MNIST (Adam, pycaffe driver), test accuracy;
2. the fetal pipeline on simulated scans: simulate a training and a held-out dataset (other
   seed, convex and linear probes), make the patch LMDBs for each beam encoding, train the
   patch classifier on each, classify the held-out scans densely, measure the AC and judge the
   plane, and print the ablation table.

Every stage reuses what an earlier run left (datasets, LMDBs, final snapshots), so a second
run only re-evaluates; ``retrain=True`` trains again.
"""
from __future__ import annotations

import functools
import json
import pathlib
import time

from fetal_biometry import (evaluation, mnist, model as model_folder, patch_records,
                            patches, paths, simulator, training)
from fetal_biometry.caffe_env import caffe, proto


def mnist_lmdbs(root: pathlib.Path = paths.MNIST) -> None:
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


def _trained(solver: str, out: pathlib.Path, retrain: bool, **kwargs) -> pathlib.Path:
    """Final weights of ``solver`` in ``out``: trained now, or reused from an earlier run."""
    max_iter = kwargs.get("max_iter") or training.read_prototxt(solver, proto().SolverParameter).max_iter
    state = training.latest_snapshot(out)
    if retrain or state is None or not state.stem.endswith(f"_iter_{max_iter}"):
        state = training.train(solver, out, overwrite=True, **kwargs).snapshot
    else:
        print(f"reusing {state.with_suffix('.caffemodel')} (retrain to train again)")
    return state.with_suffix(".caffemodel")


def run_mnist(iterations: int = 2000, gpu: int | None = None, retrain: bool = False) -> float:
    """Train the tutorial CNN on MNIST and print its test accuracy."""
    mnist_lmdbs()
    start = time.perf_counter()
    folder = paths.prototxt_dir("tutorial_cnn")
    weights = _trained(str(folder / "solver.prototxt"), paths.run_dir("tutorial_cnn"),
                       retrain, gpu=gpu, max_iter=iterations)
    accuracy = test_accuracy(weights, str(folder / "test.prototxt"), 100)
    print(f"tutorial CNN, Adam, {iterations} iterations of 64 images "
          f"({time.perf_counter() - start:.0f} s): MNIST test accuracy {accuracy:.2%} "
          f"on 10,000 images; weights {weights}")
    return accuracy


def simulated(path: pathlib.Path, cases: int, seed: int) -> None:
    """Simulate a dataset of convex and linear scans at ``path`` unless it is there."""
    if (path / "dataset.json").is_file():
        return
    from tqdm import tqdm
    simulator.write(path, cases, seed, probe="mixed",
                    progress=functools.partial(tqdm, total=cases, desc=f"simulate {path.name}", unit="scan"))


def _current(lmdbs: pathlib.Path, encoding: str) -> bool:
    """Whether the LMDBs at ``lmdbs`` were made with this encoding, today's patch size and format."""
    manifest = lmdbs / "manifest.json"
    if not manifest.is_file():
        return False
    made = json.loads(manifest.read_text())
    return (made.get("encoding") == encoding and made.get("patch") == patches.SIZE
            and made.get("version") == patch_records.VERSION)


def run_fetal(cases: int = 100, heldout: int = 30, gpu: int | None = None,
              retrain: bool = False) -> dict[str, dict]:
    """The fetal pipeline end to end; returns the evaluation summary per beam encoding."""
    from tqdm import tqdm

    simulated(paths.SIM_TRAIN, cases, seed=0)
    simulated(paths.SIM_HELDOUT, heldout, seed=1)
    scans = None
    summaries = {}
    for encoding in patches.ENCODINGS:
        lmdbs = paths.patch_lmdbs(encoding)
        fresh = not _current(lmdbs, encoding)
        if fresh:
            scans = scans or list(patch_records.dataset_scans(paths.SIM_TRAIN))
            patch_records.build(scans, lmdbs, encoding, seed=0,
                                sources={"dataset": str(paths.SIM_TRAIN)})
        name = paths.fetal_name(encoding)
        run = paths.run_dir(name)
        _trained(str(paths.prototxt_dir(name) / "solver.prototxt"), run, retrain or fresh, gpu=gpu)
        model = model_folder.load(run)
        summaries[model.name] = evaluation.evaluate(model, paths.SIM_HELDOUT, paths.EVALUATION,
                                                    progress=lambda it, desc: tqdm(it, desc=desc))
    table = evaluation.write_report(summaries, paths.EVALUATION)
    print(f"\nheld-out evaluation ({heldout} simulated scans, seed 1, convex and linear probes; "
          f"models: {', '.join(str(p) for p in paths.demo_models())}):\n")
    print(table)
    print(f"\nper-case results, figures and overlays in {paths.EVALUATION}/; "
          f"the report: {pathlib.Path(paths.EVALUATION, 'report.html').resolve()}")
    return summaries
