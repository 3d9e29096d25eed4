"""The main job of ``make demo``, stage by stage (run from the repository root).

1. the tutorial's CNN on real MNIST (Adam, pycaffe driver), test accuracy;
2. the fetal pipeline on simulated scans, one small function per step: simulate a training and
   a held-out dataset (other seed, convex and linear probes) and the foreign check set
   (simulator settings outside the training ranges, other pixel spacings)
   (:func:`simulate_sets`); the source's patch classifier (``rotate``: the rotated patches of
   the tutorial) and its LMDBs (:func:`patch_lmdbs`), beside one segmenter (a U-Net,
   :mod:`fetal_biometry.inference.segmentation`, ``beam``) and its dense label records
   (:func:`segmenter_records`); both nets trained and evaluated at once, one process each
   (:func:`train_and_evaluate`: dense inference, the AC, the plane verdict); one table per set,
   the two kinds side by side (:func:`print_tables`). The three-encoding ablations of both
   kinds, over three seeds, are the experiments' (``tools/experiments.py``).

Every stage reuses what an earlier run left (datasets, LMDBs, final snapshots), so a second
run only re-evaluates; ``retrain=True`` trains again.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import time

from fetal_biometry import atomic, paths
from fetal_biometry.caffe_env import proto
from fetal_biometry.evaluation import scans as evaluation
from fetal_biometry.experiments import jobs as experiments
from fetal_biometry.io import dataset
from fetal_biometry.nets import checks, model as model_folder, monitor, training
from fetal_biometry.patches import encoding as patches, records as patch_records, segment_records
from fetal_biometry.tutorial import mnist


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
    net = checks.net(net_path, weights, kind="train")
    param = training.read_prototxt(net_path, proto().NetParameter)
    return monitor.validate(net, param, batches)["accuracy"]


def run_mnist(iterations: int = 2000, gpu: int | None = None, retrain: bool = False) -> float:
    """Train the tutorial CNN on MNIST and print its test accuracy."""
    mnist_lmdbs()
    start = time.perf_counter()
    folder = paths.prototxt_dir("tutorial_cnn")
    weights = training.trained(str(folder / "solver.prototxt"), paths.run_dir("tutorial_cnn"),
                       retrain, gpu=gpu, max_iter=iterations)
    accuracy = test_accuracy(weights, str(folder / "test.prototxt"), 100)
    print(f"tutorial CNN, Adam, {iterations} iterations of 64 images "
          f"({time.perf_counter() - start:.0f} s): MNIST test accuracy {accuracy:.2%} "
          f"on 10,000 images; weights {weights}")
    return accuracy


def _current(lmdbs: pathlib.Path, encoding: str, generator: dict) -> bool:
    """Whether the LMDBs at ``lmdbs`` were made with this encoding, today's patch size and
    format, from the training scans the simulator makes today (``generator``)."""
    manifest = lmdbs / "manifest.json"
    if not manifest.is_file():
        return False
    made = json.loads(manifest.read_text())
    return (made.get("encoding") == encoding and made.get("patch") == patches.SIZE
            and made.get("version") == patch_records.VERSION
            and made.get("sources", {}).get("generator") == generator)


def _current_records(folder: pathlib.Path, encoding: str, generator: dict) -> bool:
    """Whether the segmenter records at ``folder`` were made with this encoding, today's spacing,
    tile and format, from the training scans the simulator makes today (``generator``)."""
    try:
        made = segment_records.read_manifest(folder)
    except segment_records.RecordError:
        return False
    return (made["encoding"] == encoding and made["spacing_mm"] == segment_records.SPACING_MM
            and made["tile"] == segment_records.TILE
            and made.get("balance", {}).get("method") == segment_records.balance_method("median", segment_records.WEIGHTING)
            and made.get("sources", {}).get("generator") == generator)


def _train_and_evaluate(name: str, retrain: bool, gpu: int | None,
                        position: int) -> tuple[str, dict[str, dict]]:
    """Train (or reuse) the net of the checked-in prototxt folder ``name`` (``fetal_<encoding>``
    or ``segmenter_<encoding>``) and evaluate it on :data:`SETS`; runs in a worker process of
    :func:`train_and_evaluate`. Returns the model's name and its summaries by set."""
    from tqdm import tqdm

    training.trained(str(paths.prototxt_dir(name) / "solver.prototxt"), paths.run_dir(name),
                     retrain, gpu=gpu, label=f"train {name}", position=position)
    model = model_folder.load(paths.run_dir(name))
    return model.name, {set_name: evaluation.evaluate(
        model, data, out, progress=lambda it, desc: tqdm(it, desc=f"{set_name} {desc}",
                                                         position=position))
        for set_name, (data, out, _) in SETS.items()}


def train_and_evaluate(retrain: dict[str, bool], gpu: int | None = None) -> dict[str, dict[str, dict]]:
    """Train (``retrain[name]``: afresh) or reuse each named net and evaluate it, all
    nets at once (one process each, OpenBLAS on one thread: the demo's two nets, one per core).
    Returns the summaries per set and model."""
    # OpenBLAS threads beside other processes collapse (docs/pipeline.md, Training).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # spawn: a fresh interpreter per worker; Caffe's state does not survive a fork.
    context = multiprocessing.get_context("spawn")
    summaries: dict[str, dict[str, dict]] = {name: {} for name in SETS}
    with concurrent.futures.ProcessPoolExecutor(len(retrain), mp_context=context) as pool:
        futures = [pool.submit(_train_and_evaluate, name, again, gpu, index)
                   for index, (name, again) in enumerate(retrain.items())]
        for future in futures:  # in the nets' order, for the tables
            name, by_set = future.result()
            for set_name, summary in by_set.items():
                summaries[set_name][name] = summary
    return summaries


#: What the demo evaluates on: (folder, report folder, title).
SETS = {"heldout": (paths.SIM_HELDOUT, paths.EVALUATION, "held-out evaluation ({n} simulated "
                    "scans, seed 1, convex and linear probes, the training scans' settings)"),
        "foreign": (paths.SIM_FOREIGN, paths.EVALUATION_FOREIGN, "foreign check set ({n} "
                    "simulated scans, seed 3, simulator settings outside the training ranges, a "
                    "third each at 256, 384 and 512 px: about 0.65, 0.43, 0.33 mm per pixel)")}


#: The patch classifier ``make demo`` trains: the source's rotated patches (the three-encoding
#: ablation is the experiments' ``ablation`` plan).
PATCH_ENCODINGS = ("rotate",)
#: The segmenter's encoding: beam, chosen on the validation scans (docs/segmenter.md).
SEGMENTER_ENCODINGS = ("beam",)


def simulate_sets(cases: int = 100, heldout: int = 30) -> dict[str, experiments.Recipe]:
    """Simulate the training pool (``cases`` scans), the held-out set (``heldout``) and the
    foreign check set (:data:`fetal_biometry.experiments.RECIPES`) unless they are current;
    returns their recipes by name (``train`` and :data:`SETS`)."""
    recipes = {"train": dataclasses.replace(experiments.RECIPES["pool"], count=cases),
               "heldout": dataclasses.replace(experiments.RECIPES["heldout"], count=heldout),
               "foreign": experiments.RECIPES["foreign"]}
    for name, folder in (("train", paths.SIM_TRAIN), *((n, SETS[n][0]) for n in SETS)):
        experiments.simulated(folder, recipes[name])
    return recipes


def patch_lmdbs(encodings, trained_on: dict, retrain: bool = False) -> dict[str, bool]:
    """Make each encoding's patch LMDBs from the training scans unless current; returns
    {net name: train afresh}."""
    again, scans = {}, None
    for encoding in encodings:
        lmdbs = paths.patch_lmdbs(encoding)
        fresh = not _current(lmdbs, encoding, trained_on)
        again[paths.fetal_name(encoding)] = retrain or fresh
        if fresh:
            scans = scans or list(patch_records.dataset_scans(paths.SIM_TRAIN))
            patch_records.build(scans, lmdbs, encoding, seed=0,
                                sources={"dataset": str(paths.SIM_TRAIN), "generator": trained_on})
    return again


def segmenter_records(encodings, trained_on: dict, retrain: bool = False) -> dict[str, bool]:
    """Make each encoding's segmenter records from the training scans unless current; returns
    {net name: train afresh}."""
    again = {}
    for encoding in encodings:
        records = paths.segment_records(encoding)
        fresh = not _current_records(records, encoding, trained_on)
        again[paths.segmenter_name(encoding)] = retrain or fresh
        if fresh:
            segment_records.build(dataset.open(paths.SIM_TRAIN), records, encoding, seed=0,
                                  sources={"dataset": str(paths.SIM_TRAIN), "generator": trained_on})
    return again


def print_tables(summaries: dict[str, dict[str, dict]], recipes: dict[str, experiments.Recipe]) -> None:
    """Write each set's report and print its table (the models side by side)."""
    for set_name, (_, out, title) in SETS.items():
        table = evaluation.write_report(summaries[set_name], out)
        print(f"\n{title.format(n=recipes[set_name].count)}:\n\n{table}\n\nper-case results, "
              f"figures and overlays in {out}/; the report: {pathlib.Path(out, 'report.html').resolve()}")


def run_fetal(cases: int = 100, heldout: int = 30, gpu: int | None = None,
              retrain: bool = False, patch_encodings=PATCH_ENCODINGS,
              segmenter_encodings=SEGMENTER_ENCODINGS) -> dict[str, dict[str, dict]]:
    """The fetal pipeline end to end; returns the evaluation summaries per set and model.

    Datasets follow :data:`fetal_biometry.experiments.RECIPES` and are simulated again when the
    simulator would now write them differently; the LMDBs, records and nets then follow. A
    patch classifier is trained for each of ``patch_encodings``, a segmenter for each of
    ``segmenter_encodings``.
    """
    recipes = simulate_sets(cases, heldout)
    trained_on = experiments.generator(recipes["train"])
    again = {**patch_lmdbs(patch_encodings, trained_on, retrain),
             **segmenter_records(segmenter_encodings, trained_on, retrain)}
    for _, out, _ in SETS.values():  # held here; the workers evaluate into them
        atomic.claim_output(out, evaluation.TOOL, overwrite=True)
        atomic.mark(out, evaluation.TOOL)
    summaries = train_and_evaluate(again, gpu)
    print(f"\nmodels: {', '.join(str(paths.run_dir(name)) for name in again)}, trained on {cases} "
          "simulated scans (seed 0, convex and linear probes)")
    print_tables(summaries, recipes)
    return summaries
