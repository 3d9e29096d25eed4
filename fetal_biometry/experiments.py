"""The experiments of issue 14: several training seeds, a learning curve, what each of the
simulator's randomisations bought, and the patch size chosen on a validation split.

**Datasets**, simulated once under ``data/experiments/`` (:data:`RECIPES`) and simulated again
whenever the generator record their dataset.json holds differs from what the simulator would
write now (another simulator version or appearance) or the number of scans differs:

==========  ====  =====  ===================================================================
set         seed  scans  what for
==========  ====  =====  ===================================================================
pool        0     100    training scans: mixed probes, ``simulator.TRAINING``
validation  2     30     choosing the patch size and the trust limits; 10 of them feed the
                         LMDBs' val split, which only watches training (nothing is chosen by it)
validation- 4     30     choosing the trust limits at other spacings: ``simulator.TRAINING``,
sizes                    a third each at 256, 384 and 512 px
heldout     1     30     in-distribution held-out scans: the recipe of make demo's
                         ``data/fetal/heldout``
foreign     3     30     the foreign check set: ``simulator.FOREIGN``, settings outside the
                         training ranges, a third each at 256, 384 and 512 px, so their
                         spacing differs (about 0.65, 0.43 and 0.33 mm per pixel)
==========  ====  =====  ===================================================================

**A job** (:class:`Job`) trains one net and evaluates it: beam encoding, number of training
scans, seed, the training data's variant (all randomisations, none, or one group left out),
patch size, augmentation copies, iterations. The seed chooses which scans of the pool train (the
first ``scans`` of a seeded permutation: nested, and all of them at 100), the patch sampling
and the solver's ``random_seed``, so the spread over seeds is that of the whole recipe. The
solver is make demo's (:func:`fetal_biometry.catalog.patch_classifier`), written for the job
into its folder ``runs/experiments/jobs/NAME/``; it ends as a model folder (``model/``) and
``summary.json``, the :func:`fetal_biometry.evaluation.evaluate` summary on each evaluation set.
A job whose summary holds the sets asked for is skipped and an interrupted training resumes
from its last snapshot, so a run that was stopped continues where it was; evaluations of a
dataset simulated anew since are redone, and a model whose pool was simulated anew is trained
again. Each evaluation keeps its class maps and records the trust limits and plane thresholds
it was measured under (:func:`fetal_biometry.biometry.in_force`): after new limits are chosen
(:func:`choose_limits`, the ``thresholds`` plan) a run measures every evaluation again from its
maps, without Caffe.

:func:`run` runs jobs in parallel worker processes (``tools/experiments.py job``); the plans
(:func:`patch_size_plan`, :func:`ablation_plan`, :func:`learning_curve_plan`,
:func:`randomisations_plan`, :func:`thresholds_plan`) say which jobs; :func:`aggregate` and :func:`table` give mean +- sd
over seeds, :func:`curves` the numbers of :func:`fetal_biometry.figures.learning_curve`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from google.protobuf import text_format

from fetal_biometry import (atomic, biometry, catalog, dataset, evaluation, model as model_folder,
                            nets, patch_records, patches, paths, scan_encoding, segment_records,
                            simulator, thresholds, training)

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "experiments.py"
SUMMARY = "summary.json"
MODEL = "model"  # the job's model folder, and so the name of its evaluation records
SEEDS = (0, 1, 2)
SCANS = (10, 25, 50, 100)  # the learning curve's training scans
PATCH_SIZES = (24, 32, 40, 48)
AUGMENT = 2  # augmented copies per patch in the experiments' LMDBs (patch_records.build)
VAL_CASES = 10  # validation scans in each job's LMDB val split: 2000 patches, test_iter 20 x 100
TIE = 0.005  # patch sizes whose mean per-class accuracy is this close to the best count as tied
#: Minutes one job takes on one core: 1500 iterations at 0.14 s (3.6 min), LMDBs of 110 scans
#: with 2 augmented copies (10 s), two evaluations of 30 scans (about 30 s); measured on the
#: project's 2-core machine. The tool's time estimates use it.
JOB_MINUTES = 4.5
EVALUATION_MINUTES = 0.5  # of those, one evaluation (30 scans); measuring again from maps: seconds
#: Minutes one segmenter job takes on one core: 1500 iterations of 4 tiles of 128 x 128 at about
#: 0.25 s (6.3 min, the machine shared), records of 110 scans with 2 augmented copies (10 s),
#: three evaluations of 30 scans (about 20 s each).
SEGMENTER_JOB_MINUTES = 7.5
#: The segmenter's candidate widths and spacings (depth 4 fixed: the measured starting point;
#: a fifth pooling would shrink a 128-px tile to 4 px) and the tie margin of its rule.
SEGMENTER_WIDTHS = (8, 16)
SEGMENTER_SPACINGS = (1.0, 1.5)
SEGMENTER_TIE = 0.01


class ExperimentError(RuntimeError):
    """An experiment cannot run; the message says what and what to do."""


# ----------------------------------------------------------------------------- datasets

@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a dataset is simulated.

    ``appearance`` names a preset of the simulator (``TRAINING``, ``FOREIGN``, ``NARROW``);
    ``without`` switches randomisation groups of it back to their narrow values
    (``simulator.Appearance.without``); ``sides`` are image sides in pixels, each given to an
    equal block of the cases.
    """

    seed: int
    count: int
    appearance: str = "TRAINING"
    without: tuple[str, ...] = ()
    sides: tuple[int, ...] = (256,)
    probe: str = "mixed"
    unacceptable_share: float = 0.3

    def side(self, index: int) -> int:
        """Image side of case ``index``."""
        return self.sides[index * len(self.sides) // self.count]


RECIPES = {
    "pool": Recipe(seed=0, count=100),
    "validation": Recipe(seed=2, count=30),
    "validation-sizes": Recipe(seed=4, count=30, sides=(256, 384, 512)),
    "heldout": Recipe(seed=1, count=30),
    "foreign": Recipe(seed=3, count=30, appearance="FOREIGN", sides=(256, 384, 512)),
}


HALVES = ("physics", "anatomy")  # the two halves of simulator.Appearance


def groups() -> tuple[str, ...]:
    """The simulator's randomisation groups, each of which a recipe can switch off."""
    return simulator.TRAINING.groups()


def appearance(recipe: Recipe) -> simulator.Appearance:
    """The ``simulator.Appearance`` a recipe renders with: its preset, groups switched off."""
    look = getattr(simulator, recipe.appearance)
    for group in recipe.without:
        look = look.without(group)
    return look


def generator(recipe: Recipe) -> dict:
    """The generator record a dataset of ``recipe`` holds in its dataset.json (as read back)."""
    parts = [simulator.generator_record(recipe.seed, (side, side), recipe.probe,
                                        recipe.unacceptable_share, appearance(recipe))
             for side in recipe.sides]
    record = parts[0] if len(parts) == 1 else \
        {"name": "fetal_biometry.experiments", "sides": list(recipe.sides), "parts": parts}
    return json.loads(json.dumps(record))


def holds(path: str | os.PathLike, recipe: Recipe) -> bool:
    """Whether the dataset at ``path`` is what ``recipe`` simulates today."""
    try:
        index = json.loads(pathlib.Path(path, "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return index.get("generator") == generator(recipe) and len(index.get("cases", ())) == recipe.count


def simulated(path: str | os.PathLike, recipe: Recipe, progress: bool = True) -> bool:
    """Simulate ``recipe`` into ``path`` unless it holds it already; True when it simulated."""
    if holds(path, recipe):
        return False
    from tqdm import tqdm

    look = appearance(recipe)
    cases = (simulator.simulate_case(recipe.seed, index, (recipe.side(index),) * 2, recipe.probe,
                                     recipe.unacceptable_share, look)
             for index in range(recipe.count))
    dataset.write_dataset(path, tqdm(cases, total=recipe.count, unit="scan", disable=not progress,
                                     desc=f"simulate {pathlib.Path(path).name}"), generator(recipe))
    return True


# ----------------------------------------------------------------------------- jobs

@dataclasses.dataclass(frozen=True)
class Job:
    """One training and its evaluation.

    ``variant`` is the training data: ``all`` (``simulator.TRAINING``), ``none``
    (``simulator.NARROW``: the ranges from before issue 14) or ``no-GROUP`` (TRAINING with one
    group of ``simulator.TRAINING.groups()`` at its narrow values).
    """

    encoding: str
    scans: int
    seed: int
    variant: str = "all"
    patch: int = patches.SIZE
    augment: int = AUGMENT
    iterations: int = catalog.FETAL_ITERATIONS
    kind: str = model_folder.PATCH_CLASSIFIER
    #: The segmenter's U-Net width and spacing (mm per pixel); ignored for patch classifiers.
    width: int = nets.UNET_WIDTH
    spacing_mm: float = segment_records.SPACING_MM

    @property
    def segmenter(self) -> bool:
        return self.kind == model_folder.SEGMENTER

    @property
    def name(self) -> str:
        if self.segmenter:
            return (f"segmenter-{self.encoding}-{self.scans}scans-seed{self.seed}-{self.variant}-"
                    f"w{self.width}-{self.spacing_mm:g}mm-aug{self.augment}-it{self.iterations}")
        return (f"{self.encoding}-{self.scans}scans-seed{self.seed}-{self.variant}-"
                f"patch{self.patch}-aug{self.augment}-it{self.iterations}")

    def record(self) -> dict:
        """The job as stored in its records: a patch classifier's without the segmenter's fields,
        as before segmenters existed, so its earlier records stay current."""
        fields = dataclasses.asdict(self)
        if not self.segmenter:
            for key in ("kind", "width", "spacing_mm"):
                del fields[key]
        else:
            del fields["patch"]
        return fields


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where the experiments keep their data and runs, and the recipes of their datasets."""

    data: pathlib.Path = paths.EXPERIMENT_DATA
    runs: pathlib.Path = paths.EXPERIMENTS
    recipes: Mapping[str, Recipe] = dataclasses.field(default_factory=lambda: dict(RECIPES))
    val_cases: int = VAL_CASES

    def to_dict(self) -> dict:
        return {"data": str(pathlib.Path(self.data).resolve()),
                "runs": str(pathlib.Path(self.runs).resolve()),
                "recipes": {k: dataclasses.asdict(r) for k, r in self.recipes.items()},
                "val_cases": self.val_cases}

    @classmethod
    def from_dict(cls, record: dict) -> "Setup":
        recipes = {k: Recipe(**{**r, "without": tuple(r["without"]), "sides": tuple(r["sides"])})
                   for k, r in record["recipes"].items()}
        return cls(pathlib.Path(record["data"]), pathlib.Path(record["runs"]), recipes,
                   record["val_cases"])

    def job_dir(self, job: Job) -> pathlib.Path:
        return pathlib.Path(self.runs) / "jobs" / job.name

    def training_data(self, variant: str) -> tuple[pathlib.Path, Recipe]:
        """The pool a variant trains from: its folder and recipe."""
        pool = self.recipes["pool"]
        if variant == "all":
            return pathlib.Path(self.data) / "pool", pool
        if variant == "none":
            recipe = dataclasses.replace(pool, appearance="NARROW")
        elif variant.startswith("no-") and variant[3:] in (*groups(), *HALVES):
            name = variant[3:]
            left_out = simulator.TRAINING.groups(name) if name in HALVES else (name,)
            recipe = dataclasses.replace(pool, without=left_out)
        else:
            raise ExperimentError(f"unknown training data variant {variant!r}: all, none or "
                                  f"no-GROUP with a group of {groups()}")
        return pathlib.Path(self.data) / f"pool-{variant}", recipe

    def evaluation_record(self, job: Job, name: str) -> pathlib.Path:
        """The job's evaluation record on set ``name`` (:func:`fetal_biometry.evaluation.evaluate`)."""
        return self.job_dir(job) / f"evaluation_{name}" / f"{MODEL}.json"

    def evaluation_set(self, name: str) -> tuple[pathlib.Path, Recipe]:
        if name == "pool" or name not in self.recipes:
            raise ExperimentError(f"unknown evaluation set {name!r}; choose from "
                                  f"{[n for n in self.recipes if n != 'pool']}")
        return pathlib.Path(self.data) / name, self.recipes[name]


def training_scans(names: Sequence[str], count: int, seed: int) -> list[str]:
    """The ``count`` scans of a pool that train with ``seed``: the first ``count`` of a seeded
    permutation (so a seed's 10 scans are among its 25), sorted; all of them at the pool's size."""
    if not 1 <= count <= len(names):
        raise ExperimentError(f"{count} training scans asked for, the pool holds {len(names)}")
    order = np.random.default_rng(seed).permutation(sorted(names))
    return sorted(order[:count].tolist())


def read_record(folder: pathlib.Path) -> dict | None:
    """A job's summary.json, or None when it has none yet."""
    try:
        return json.loads(pathlib.Path(folder, SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def _current(setup: Setup, job: Job) -> dict:
    """A job's record as it stands today: its summary, or a fresh one when the summary's model
    learnt from datasets the simulator would no longer make; evaluations of datasets made
    since are dropped."""
    record = read_record(setup.job_dir(job))
    if record is None or record.get("training") != _sources(setup, job):
        return {"job": job.record(), "training": _sources(setup, job), "evaluations": {},
                "datasets": {}, "seconds": 0.0}
    for name in list(record["evaluations"]):
        if name not in setup.recipes or record["datasets"].get(name) != generator(setup.recipes[name]):
            del record["evaluations"][name]
    return record


def _missing(setup: Setup, job: Job, sets: Sequence[str]) -> tuple[dict, list[str]]:
    """The job's record and the sets it lacks or holds measured under other limits than today's."""
    record = _current(setup, job)
    under = record.get("measured_under", {})
    return record, [s for s in sets if s not in record["evaluations"]
                    or under.get(s) != evaluation.in_force(job.kind)]


def done(setup: Setup, job: Job, sets: Sequence[str]) -> bool:
    """Whether the job's summary holds every evaluation set of ``sets``, of today's datasets,
    measured under today's trust limits and plane thresholds."""
    return not _missing(setup, job, sets)[1]


def _sources(setup: Setup, job: Job) -> dict:
    folder, recipe = setup.training_data(job.variant)
    # Resolved: a worker's Setup comes back from job.json with absolute paths, the command's
    # own may be relative; both must name the same pool.
    return json.loads(json.dumps({"job": job.record(), "pool": str(folder.resolve()),
                                  "pool_generator": generator(recipe),
                                  "validation_generator": generator(setup.recipes["validation"])}))


class _Scans:
    """The job's training scans and the first validation scans as one readable set of cases
    (what :func:`fetal_biometry.segment_records.build` reads: ``cases``, ``read``,
    ``structures``, ``root``); the validation scans' names get a prefix (both datasets name
    their cases sim00000...)."""

    PREFIX = "validation:"

    def __init__(self, pool: dataset.Dataset, chosen: Sequence[str], validation: dataset.Dataset,
                 val_names: Sequence[str]):
        self.pool, self.validation, self.root = pool, validation, pool.root
        self.cases = (*chosen, *(self.PREFIX + n for n in val_names))

    def structures(self) -> set[str]:
        return self.pool.structures() | self.validation.structures()

    def read(self, name: str) -> dataset.Case:
        if name.startswith(self.PREFIX):
            return dataclasses.replace(self.validation.read(name[len(self.PREFIX):]), name=name)
        return self.pool.read(name)


def _lmdbs(setup: Setup, job: Job, out: pathlib.Path) -> bool:
    """The job's patch LMDBs or segmenter records: train = its training scans, val = the first
    validation scans. False when ``out`` holds them already, True when they were made now."""
    sources = _sources(setup, job)
    version = segment_records.VERSION if job.segmenter else patch_records.VERSION
    try:
        made = json.loads((out / "manifest.json").read_text())
        if made.get("sources") == sources and made.get("version") == version and \
                (not job.segmenter or made.get("balance", {}).get("method") == segment_records.BALANCE):
            return False
    except (OSError, ValueError):
        pass
    if job.segmenter:
        pool = dataset.open(setup.training_data(job.variant)[0])
        validation = dataset.open(setup.evaluation_set("validation")[0])
        chosen = training_scans(pool.cases, job.scans, job.seed)
        scans = _Scans(pool, chosen, validation, validation.cases[:setup.val_cases])
        segment_records.build(scans, out, job.encoding, job.spacing_mm, seed=job.seed, augment=job.augment,
                              splits={"train": chosen, "val": list(scans.cases[len(chosen):])},
                              sources=sources)
        return True
    pool = dataset.open(setup.training_data(job.variant)[0])
    validation = dataset.open(setup.evaluation_set("validation")[0])
    chosen = training_scans(pool.cases, job.scans, job.seed)
    # Both datasets name their cases sim00000...: the validation scans get a prefix.
    scans = [patch_records.Scan(prefix + c.name, c.image, c.labels, c.geometry, c.spacing_mm)
             for prefix, data, names in (("", pool, chosen),
                                         ("validation:", validation, validation.cases[:setup.val_cases]))
             for c in map(data.read, names)]
    val = [s.name for s in scans[len(chosen):]]
    patch_records.build(scans, out, job.encoding, size=job.patch, seed=job.seed, sources=sources,
                        augment=job.augment, splits={"train": chosen, "val": val})
    return True


def trained(setup: Setup, job: Job) -> bool:
    """Whether the job's model folder holds its final weights, learnt from today's datasets."""
    run = setup.job_dir(job) / MODEL
    state = training.latest_snapshot(run)
    try:
        learnt_from = json.loads((run / model_folder.FILE).read_text())["data"]["sources"]
    except (OSError, ValueError, KeyError):
        return False
    return (learnt_from == _sources(setup, job) and state is not None
            and state.stem.endswith(f"_iter_{job.iterations}"))


def minutes(setup: Setup, jobs: Sequence[Job], sets: Sequence[str]) -> float:
    """About how long the jobs take on one core, in minutes: trainings not done, evaluations
    missing or without class maps."""
    total = 0.0
    for job in jobs:
        record, missing = _missing(setup, job, sets)
        if missing and not trained(setup, job):
            total += (SEGMENTER_JOB_MINUTES if job.segmenter else JOB_MINUTES) - 2 * EVALUATION_MINUTES
        total += EVALUATION_MINUTES * sum(  # kept class maps are measured again in seconds
            s not in record["evaluations"]
            or not evaluation.maps_file(setup.evaluation_record(job, s)).exists() for s in missing)
    return total


def _train(setup: Setup, job: Job, folder: pathlib.Path) -> pathlib.Path:
    """Train the job's net unless its model folder is complete; returns the model folder."""
    run = folder / MODEL
    if trained(setup, job):
        return run
    lmdbs = folder / "lmdb"
    rebuilt = _lmdbs(setup, job, lmdbs)
    if job.segmenter:
        files = catalog.segmenter(str(folder / "net"), str(lmdbs), str(run / "snapshots" / "net"),
                                  random_seed=job.seed,
                                  max_iter=job.iterations, width=job.width,
                                  val_tiles=4 * setup.val_cases)
    else:
        files = catalog.patch_classifier(str(folder / "net"), str(lmdbs), str(run / "snapshots" / "net"),
                                         random_seed=job.seed, max_iter=job.iterations)
    for path, message in files.items():
        atomic.write_text(path, text_format.MessageToString(message))
    # An interrupted training resumes on the LMDBs it began with; new LMDBs train afresh.
    training.trained(folder / "net" / "solver.prototxt", run, retrain=rebuilt)
    # A job's LMDBs are 30-150 MB and earlier snapshots 10 MB each, for some 50 jobs: the model
    # folder keeps the final weights and the LMDBs' manifest hash.
    shutil.rmtree(lmdbs)
    for path in (run / "snapshots").glob("*_iter_*.*"):
        if not path.stem.endswith(f"_iter_{job.iterations}"):
            path.unlink()
    return run


def run_job(setup: Setup, job: Job, sets: Sequence[str]) -> dict:
    """Train (unless trained) and evaluate one job on ``sets``; returns and writes its record.

    Sets its summary already holds are not evaluated again, unless their dataset has been
    simulated anew since; a model trained on datasets since simulated anew is trained again.
    A set measured under other limits than today's is measured again from its stored class maps
    (classified again where it kept none).
    """
    folder = setup.job_dir(job)
    record, missing = _missing(setup, job, sets)
    if not missing:
        return record
    start = time.perf_counter()
    model = None
    for name in missing:
        data, recipe = setup.evaluation_set(name)
        summary = None
        if name in record["evaluations"]:  # same net, same scans, other limits
            try:
                summary = evaluation.remeasure(setup.evaluation_record(job, name))
            except (ValueError, OSError):
                pass  # evaluated before class maps were kept: classify again
        if summary is None:
            model = model or model_folder.load(_train(setup, job, folder))
            summary = evaluation.evaluate(model, data, folder / f"evaluation_{name}", overlays=0)
        record["evaluations"][name] = summary
        record["datasets"][name] = generator(recipe)
        record.setdefault("measured_under", {})[name] = evaluation.in_force(job.kind)
    record["seconds"] += time.perf_counter() - start
    atomic.write_text(folder / SUMMARY, json.dumps(record, indent=1) + "\n")
    return record


def job_from_spec(spec: str | os.PathLike) -> tuple[Setup, Job, list[str]]:
    """What a worker runs, from the job.json :func:`run` wrote."""
    record = json.loads(pathlib.Path(spec).read_text())
    return Setup.from_dict(record["setup"]), job_of(record["job"]), list(record["sets"])


def job_of(record: dict) -> Job:
    """The :class:`Job` of a stored job record (:meth:`Job.record`)."""
    return Job(**record)


# ----------------------------------------------------------------------------- running jobs

def datasets(setup: Setup, jobs: Sequence[Job], sets: Sequence[str]) -> dict[pathlib.Path, Recipe]:
    """Every dataset the jobs read: their pools, the validation set and the evaluation sets."""
    needed = dict(setup.training_data(j.variant) for j in jobs)
    for name in {"validation", *sets}:
        path, recipe = setup.evaluation_set(name)
        needed[path] = recipe
    return needed


def _simulate(item: tuple[pathlib.Path, Recipe]) -> bool:
    return simulated(*item, progress=False)


def prepare(setup: Setup, jobs: Sequence[Job], sets: Sequence[str], workers: int = 2) -> None:
    """Simulate the datasets the jobs need that are missing or stale, ``workers`` at a time."""
    from tqdm import tqdm

    stale = [(p, r) for p, r in datasets(setup, jobs, sets).items() if not holds(p, r)]
    if not stale:
        return
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        for _ in tqdm(pool.map(_simulate, stale), total=len(stale), desc="simulate datasets",
                      unit="set"):
            pass


def _worker(setup: Setup, job: Job, sets: Sequence[str]) -> tuple[Job, str | None]:
    """Run one job in its own process (log in its folder); returns the job and None or why it failed."""
    folder = setup.job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    spec = atomic.write_text(folder / "job.json", json.dumps(
        {"job": job.record(), "sets": list(sets), "setup": setup.to_dict()}, indent=1) + "\n")
    # One core per worker; the repository's package first, as the tools import it.
    path = [str(TOOL.parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    with open(folder / "log.txt", "a") as log:
        code = subprocess.run([sys.executable, str(TOOL), "job", str(spec)], stdout=log,
                              stderr=subprocess.STDOUT, env=env, cwd=TOOL.parents[1]).returncode
    if code == 0:
        return job, None
    tail = (folder / "log.txt").read_text(errors="replace").strip().splitlines()[-3:]
    return job, f"exit {code}, log {folder / 'log.txt'}: " + " | ".join(tail)


def run(setup: Setup, jobs: Sequence[Job], sets: Sequence[str], workers: int = 2) -> list[dict]:
    """Run the jobs not done yet, ``workers`` in parallel; returns every job's record.

    :class:`ExperimentError` names the jobs that failed (the others finish first).
    """
    from tqdm import tqdm

    jobs = list(dict.fromkeys(jobs))
    todo = [j for j in jobs if not done(setup, j, sets)]
    if todo:
        prepare(setup, todo, sets, workers)
    failed = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="jobs", unit="job",
                 dynamic_ncols=True) as bar:
        futures = [pool.submit(_worker, setup, j, sets) for j in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                job, error = future.result()
                if error:
                    failed.append(f"{job.name}: {error}")
                    bar.write(f"failed: {job.name}: {error}")
                bar.set_postfix_str(job.name, refresh=False)
                bar.update(1)
        except BaseException:  # Ctrl-C: the running jobs stop with a snapshot, none starts
            for future in futures:
                future.cancel()
            raise
    if failed:
        raise ExperimentError(f"{len(failed)} of {len(todo)} job(s) failed (run the command again "
                              "to retry them; finished jobs are kept):\n  " + "\n  ".join(failed))
    return [read_record(setup.job_dir(j)) for j in jobs]


# ----------------------------------------------------------------------------- plans

Plan = tuple[list[Job], tuple[str, ...]]  # the jobs and the sets they are evaluated on


def patch_size_plan(sizes: Sequence[int] = PATCH_SIZES, seeds: Sequence[int] = (0,),
                    augment: int = AUGMENT, iterations: int = catalog.FETAL_ITERATIONS) -> Plan:
    """Channels encoding, 100 scans, one job per patch size and seed, on the validation set."""
    return [Job("channels", 100, s, patch=p, augment=augment, iterations=iterations)
            for p in sizes for s in seeds], ("validation",)


def ablation_plan(seeds: Sequence[int] = SEEDS, augment: int = AUGMENT,
                  iterations: int = catalog.FETAL_ITERATIONS, patch: int = patches.SIZE) -> Plan:
    """Each encoding at 100 scans, one job per seed, on the held-out and foreign sets."""
    return learning_curve_plan((100,), seeds, augment, iterations, patch)


def learning_curve_plan(scans: Sequence[int] = SCANS, seeds: Sequence[int] = SEEDS,
                        augment: int = AUGMENT, iterations: int = catalog.FETAL_ITERATIONS,
                        patch: int = patches.SIZE) -> Plan:
    """Each encoding and number of training scans, one job per seed (the ablation is its 100)."""
    return [Job(e, n, s, patch=patch, augment=augment, iterations=iterations)
            for n in scans for e in patches.ENCODINGS for s in seeds], ("heldout", "foreign")


def thresholds_plan(seeds: Sequence[int] = SEEDS, augment: int = AUGMENT,
                    iterations: int = catalog.FETAL_ITERATIONS, patch: int = patches.SIZE) -> Plan:
    """The ablation's nets on both validation sets: what :func:`choose_limits` chooses from."""
    return ablation_plan(seeds, augment, iterations, patch)[0], ("validation", "validation-sizes")


SEGMENTER_SETS = ("validation", "heldout", "foreign")


def segmenter_plan(seeds: Sequence[int] = SEEDS, augment: int = AUGMENT,
                   iterations: int = catalog.SEGMENTER_ITERATIONS, width: int = nets.UNET_WIDTH,
                   spacing_mm: float = segment_records.SPACING_MM) -> Plan:
    """The segmenter's three encodings at 100 scans, one job per seed, on the validation,
    held-out and foreign sets (beside the patch classifier's ablation)."""
    return segmenter_curve_plan((100,), seeds, augment, iterations, width, spacing_mm)[0], SEGMENTER_SETS


def segmenter_curve_plan(scans: Sequence[int] = SCANS, seeds: Sequence[int] = SEEDS,
                         augment: int = AUGMENT, iterations: int = catalog.SEGMENTER_ITERATIONS,
                         width: int = nets.UNET_WIDTH,
                         spacing_mm: float = segment_records.SPACING_MM) -> Plan:
    """The segmenter's learning curve: each encoding and number of training scans, one job per
    seed (the 100-scan jobs are :func:`segmenter_plan`'s)."""
    return [Job(e, n, s, augment=augment, iterations=iterations, kind=model_folder.SEGMENTER,
                width=width, spacing_mm=spacing_mm)
            for n in scans for e in scan_encoding.ENCODINGS for s in seeds], SEGMENTER_SETS


def segmenter_size_plan(widths: Sequence[int] = SEGMENTER_WIDTHS,
                        spacings: Sequence[float] = SEGMENTER_SPACINGS, seeds: Sequence[int] = (0,),
                        augment: int = AUGMENT, iterations: int = catalog.SEGMENTER_ITERATIONS) -> Plan:
    """Channels encoding, 100 scans: one job per U-Net width, spacing and seed, on the
    validation set; :func:`choose_segmenter` picks by its stated rule."""
    return [Job("channels", 100, s, augment=augment, iterations=iterations, kind=model_folder.SEGMENTER,
                width=w, spacing_mm=sp) for w in widths for sp in spacings for s in seeds], ("validation",)


def choose_segmenter(records: Sequence[dict]) -> tuple[tuple[int, float], str]:
    """The segmenter's width and spacing by the rule written down before the run: the highest
    mean per-class Dice over the eight classes on the validation set (averaged over seeds);
    configurations within :data:`SEGMENTER_TIE` of it are tied, and among them the cheaper wins
    (fewer multiply-adds per scan: the smaller width, then the coarser spacing)."""
    by_config: dict[tuple[int, float], list[dict]] = {}
    for record in records:
        job = record["job"]
        by_config.setdefault((job["width"], job["spacing_mm"]), []).append(record["evaluations"]["validation"])

    def dice(config):
        return float(np.mean([np.mean(list(s["per_class_dice"].values())) for s in by_config[config]]))

    best = max(map(dice, by_config))
    tied = [c for c in by_config if dice(c) >= best - SEGMENTER_TIE]
    chosen = min(tied, key=lambda c: (c[0], -c[1]))
    rule = (f"highest mean per-class Dice on the validation set (best {best:.3f}); configurations "
            f"within {SEGMENTER_TIE} tied ({', '.join(f'width {w}, {sp:g} mm' for w, sp in tied)}), "
            "the cheaper wins")
    return chosen, rule


def variants(by_group: bool = False) -> list[tuple[str, int | None]]:
    """The randomisation ablation's rows: (variant, augmentation copies or None for the default).

    By default each half of the simulator's randomisation (physics, anatomy) is left out at
    once (4 trainings beyond "all"); ``by_group`` leaves out each group instead (one training
    per group of ``simulator.TRAINING.groups()``).
    """
    left_out = groups() if by_group else HALVES
    return [("all", None), ("none", 0), *[(f"no-{g}", None) for g in left_out], ("all", 0)]


def randomisations_plan(augment: int = AUGMENT, iterations: int = catalog.FETAL_ITERATIONS,
                        by_group: bool = False, patch: int = patches.SIZE) -> Plan:
    """Channels, 100 scans, seed 0: all randomisations, none, each group left out, and all
    without augmentation; on the foreign set (and the held-out one, to see what it costs there)."""
    return [Job("channels", 100, 0, variant, patch, augment if copies is None else copies,
                iterations) for variant, copies in variants(by_group)], ("foreign", "heldout")


# ----------------------------------------------------------------------------- aggregation

#: Short names of the classifier classes in table headings, in evaluation.table's order.
HEADINGS = {"amniotic_fluid": "fluid", "stomach_bubble": "stomach", "umbilical_vein": "vein",
            "shadow": "shadow", "background": "background"}
#: Table columns: metric -> (heading, value of one evaluation summary; None when not measured).
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "pixel_accuracy": ("pixel acc.", lambda s: s["pixel_accuracy"]),
    **{c: (heading, lambda s, c=c: s["per_class_accuracy"][c]) for c, heading in HEADINGS.items()},
    "plane_acceptance": ("plane acceptance", lambda s: s["plane_acceptance_accuracy"]),
    "abdomen_dice": ("abdomen Dice", lambda s: s.get("abdomen_dice")),
    "ac_measured": ("AC measured", lambda s: s["ac_measured"]),
    "ac_median": ("median AC error", lambda s: s["ac_median_error_percent"]),
    "ac_p90": ("90th pct. AC error", lambda s: s.get("ac_p90_error_percent")),
    "ac_max": ("max AC error", lambda s: s.get("ac_max_error_percent")),
}
PERCENT = ("ac_median", "ac_p90", "ac_max")


def mean_sd(values: Iterable[float | None]) -> dict:
    """Mean and sample standard deviation (ddof 1) of the values that are not None; ``n`` of
    them. Mean None without values, sd None with fewer than two."""
    known = np.array([v for v in values if v is not None], float)
    return {"mean": float(known.mean()) if len(known) else None,
            "sd": float(known.std(ddof=1)) if len(known) > 1 else None, "n": int(len(known))}


def aggregate(records: Iterable[dict], evaluation_set: str,
              key: Callable[[dict], object]) -> dict[object, dict]:
    """Mean +- sd over the records (seeds) that share ``key(job)``, on one evaluation set:
    ``{key: {"seeds": k, "cases": c, metric: mean_sd}}`` in the records' order."""
    grouped: dict[object, list[dict]] = {}
    for record in records:
        grouped.setdefault(key(record["job"]), []).append(record["evaluations"][evaluation_set])
    return {k: {"seeds": len(summaries), "cases": summaries[0]["cases"],
                **{m: mean_sd(get(s) for s in summaries) for m, (_, get) in METRICS.items()}}
            for k, summaries in grouped.items()}


def cell(metric: str, value: dict, seeds: int, cases: int) -> str:
    """One table cell: ``0.881 ± 0.012``, ``1.2 ± 0.3 %``, ``28.3 ± 0.6 / 30``; ``-`` without a
    value, and ``(n of k)`` when only n of the k seeds gave one."""
    if value["mean"] is None:
        return "-"
    digits = 1 if metric in PERCENT or metric == "ac_measured" else 3
    text = f"{value['mean']:.{digits}f}" + ("" if value["sd"] is None else f" ± {value['sd']:.{digits}f}")
    text += " %" if metric in PERCENT else f" / {cases}" if metric == "ac_measured" else ""
    return text + (f" ({value['n']} of {seeds})" if value["n"] < seeds else "")


def table(rows: Mapping[str, dict], label: str) -> str:
    """Markdown table of :func:`aggregate`'s result, rows labelled by the given strings."""
    header = [label, "seeds", *(heading for heading, _ in METRICS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, row in rows.items():
        cells = [cell(m, row[m], row["seeds"], row["cases"]) for m in METRICS]
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The learning curve's panels: (metric, title).
PANELS = (("pixel_accuracy", "pixel accuracy"), ("shadow", "shadow accuracy"),
          ("umbilical_vein", "umbilical vein accuracy"), ("plane_acceptance", "plane acceptance"),
          ("ac_median", "median AC error (%)"))
#: Line styles of the evaluation sets in the learning curve.
STYLES = {"heldout": ("-", "in-distribution (held-out)"), "foreign": ("--", "foreign check set")}


def curves(records: Sequence[dict], sets: Sequence[str] = ("heldout", "foreign")) -> dict:
    """The learning curve's numbers: ``{set: {encoding: {"scans": [...], metric: {"mean": [...],
    "sd": [...]}}}}`` (the input of :func:`fetal_biometry.figures.learning_curve`)."""
    result = {}
    for name in sets:
        rows = aggregate(records, name, lambda job: (job["encoding"], job["scans"]))
        per_encoding: dict[str, dict] = {}
        for (encoding, scans), row in sorted(rows.items(), key=lambda kv: kv[0][1]):
            curve = per_encoding.setdefault(encoding, {"scans": [], **{m: {"mean": [], "sd": []}
                                                                       for m, _ in PANELS}})
            curve["scans"].append(scans)
            for metric, _ in PANELS:
                curve[metric]["mean"].append(row[metric]["mean"])
                curve[metric]["sd"].append(row[metric]["sd"])
        result[name] = per_encoding
    return result


def choose_patch(records: Sequence[dict]) -> tuple[int, str]:
    """The patch size by the stated rule, and the rule: the highest mean of the five per-class
    accuracies on the validation set (averaged over the seeds of each size); sizes within
    :data:`TIE` of it are tied and the smaller median AC error (averaged alike) wins among them."""
    by_size: dict[int, list[dict]] = {}
    for record in records:
        by_size.setdefault(record["job"]["patch"], []).append(record["evaluations"]["validation"])

    def class_mean(size):
        return float(np.mean([np.mean(list(s["per_class_accuracy"].values())) for s in by_size[size]]))

    def ac_error(size):
        errors = [s["ac_median_error_percent"] for s in by_size[size]]
        return np.inf if None in errors else float(np.mean(errors))

    best = max(map(class_mean, by_size))
    tied = [size for size in by_size if class_mean(size) >= best - TIE]
    chosen = min(tied, key=ac_error)
    seeds = sorted({len(v) for v in by_size.values()})
    rule = (f"highest mean per-class accuracy on the validation set (best {best:.3f}, mean over "
            f"{'/'.join(map(str, seeds))} seed(s)); sizes within {TIE} of it tied "
            f"({', '.join(f'{size}' for size in tied)} px), the smaller median AC error wins")
    return chosen, rule


def choose_limits(setup: Setup, records: Sequence[dict], sets: Sequence[str],
                  ) -> tuple[thresholds.Choice, dict[str, list[dict]]]:
    """Trust limits and plane thresholds (:func:`fetal_biometry.thresholds.choose`) from the
    records' evaluations on ``sets`` (validation sets only), measured again from their class maps
    under :data:`~fetal_biometry.thresholds.LOOSEST`; with the per-case results by set."""
    try:
        groups = {name: [r for record in records for r in evaluation.stored_results(
            setup.evaluation_record(job_of(record["job"]), name), limits=thresholds.LOOSEST)]
            for name in sets}
    except (ValueError, OSError) as err:  # e.g. --finished jobs evaluated before maps were kept
        raise ExperimentError(f"{err} (run the command without --finished)") from err
    return thresholds.choose([r for results in groups.values() for r in results]), groups


def _rows(records, name, key, label) -> dict[str, dict]:
    return {label(k): row for k, row in aggregate(records, name, key).items()}


def _set_title(setup: Setup, name: str) -> str:
    recipe = setup.recipes[name]
    what = {"heldout": "in-distribution held-out scans", "foreign": "foreign check set",
            "validation": "validation scans",
            "validation-sizes": "validation scans at three sizes"}.get(name, name)
    sides = "/".join(str(s) for s in recipe.sides)
    return f"{what} ({recipe.count} scans, seed {recipe.seed}, {appearance(recipe).name}, {sides} px)"


def report(plan: str, setup: Setup, records: Sequence[dict], sets: Sequence[str]) -> tuple[str, dict]:
    """The markdown tables of one plan's records on its ``sets`` and their numbers (for the
    JSON beside them)."""
    labels = {
        "patch-size": (lambda j: j["patch"], lambda k: f"{k} px", "patch"),
        "ablation": (lambda j: j["encoding"], str, "encoding"),
        "learning-curve": (lambda j: (j["encoding"], j["scans"]), lambda k: f"{k[0]}, {k[1]} scans",
                           "encoding, training scans"),
        "randomisations": (lambda j: (j["variant"], j["augment"]), _variant_label, "training data"),
        "thresholds": (lambda j: j["encoding"], str, "encoding"),
        "segmenter": (lambda j: j["encoding"], lambda k: f"segmenter, {k}", "model"),
        "segmenter-curve": (lambda j: (j["encoding"], j["scans"]), lambda k: f"segmenter, {k[0]}, {k[1]} scans",
                            "model, training scans"),
        "segmenter-size": (lambda j: (j["width"], j["spacing_mm"]), lambda k: f"width {k[0]}, {k[1]:g} mm",
                           "U-Net width, spacing"),
    }
    key, label, heading = labels[plan]
    if plan in ("learning-curve", "segmenter-curve"):
        records = sorted(records, key=lambda r: (r["job"]["encoding"], r["job"]["scans"]))
    parts, numbers = [], {}
    for name in sets:
        rows = _rows(records, name, key, label)
        numbers[name] = rows
        parts.append(f"**{_set_title(setup, name)}**, mean ± sd over training seeds:\n\n"
                     + table(rows, heading))
        if plan == "randomisations":
            reference = next(iter(rows))  # all randomisations, augmented: the first row
            parts.append(f"Change from *{reference}* when a randomisation is left out ({name}; "
                         "a fall in accuracy or a rise in error is what it bought):\n\n"
                         + differences(rows, reference, heading))
    if plan == "patch-size":
        chosen, rule = choose_patch(records)
        numbers["chosen"] = {"patch": chosen, "rule": rule}
        parts.append(f"Chosen: **{chosen} px** ({rule}).")
    if plan == "segmenter-size":
        (width, spacing), rule = choose_segmenter(records)
        numbers["chosen"] = {"width": width, "spacing_mm": spacing, "rule": rule}
        parts.append(f"Chosen: **width {width}, {spacing:g} mm per pixel** ({rule}).")
    if plan == "thresholds":
        choice, groups = choose_limits(setup, records, sets)
        numbers["chosen"] = dataclasses.asdict(choice)
        parts.append(f"Chosen on {', '.join(sets)} ({len(records)} nets; copy into "
                     f"fetal_biometry/biometry.py):\n\n```\n{thresholds.constants(choice)}\n```\n\n"
                     + thresholds.report(choice, groups))
    numbers["jobs"] = [r["job"] for r in records]
    return "\n\n".join(parts) + "\n", numbers


def differences(rows: Mapping[str, dict], reference: str, label: str) -> str:
    """Markdown table of each row's mean minus the ``reference`` row's, per metric (signed)."""
    header = [label, *(heading for heading, _ in METRICS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, row in rows.items():
        if name == reference:
            continue
        cells = []
        for metric in METRICS:
            a, b = row[metric]["mean"], rows[reference][metric]["mean"]
            digits = 1 if metric in PERCENT or metric == "ac_measured" else 3
            cells.append("-" if a is None or b is None else
                         f"{a - b:+.{digits}f}" + (" %" if metric in PERCENT else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _variant_label(key: tuple[str, int]) -> str:
    variant, augment = key
    data = {"all": "all randomisations", "none": "none (the ranges before issue 14)"}.get(
        variant, f"without {variant[3:]}")
    return f"{data}, " + (f"augmented x{augment}" if augment else "no augmentation")
