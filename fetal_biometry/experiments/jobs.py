"""The experiments: several training seeds, a learning curve, what each of the
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
solver is make demo's (:func:`fetal_biometry.nets.catalog.patch_classifier`), written for the job
into its folder ``runs/experiments/jobs/NAME/``; it ends as a model folder (``model/``) and
``summary.json``, the :func:`fetal_biometry.evaluation.scans.evaluate` summary on each evaluation set.
A job whose summary holds the sets asked for is skipped and an interrupted training resumes
from its last snapshot, so a run that was stopped continues where it was; evaluations of a
dataset simulated anew since are redone, and a model whose pool was simulated anew is trained
again. Each evaluation keeps its class maps and records the trust limits and plane thresholds
it was measured under (:func:`fetal_biometry.measure.biometry.in_force`): after new limits are chosen
(:func:`choose_limits`, the ``thresholds`` plan) a run measures every evaluation again from its
maps, without Caffe.

:func:`run` runs jobs in parallel worker processes (``tools/experiments.py job``); the plans
(:mod:`fetal_biometry.experiments.plans`: :func:`patch_size_plan`, :func:`ablation_plan`, :func:`learning_curve_plan`,
:func:`randomisations_plan`, :func:`thresholds_plan`) say which jobs; :func:`aggregate` and :func:`table` give mean +- sd
over seeds, :func:`curves` the numbers of :func:`fetal_biometry.figures.learning_curve`.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Mapping, Sequence

import numpy as np
from google.protobuf import text_format

from fetal_biometry import atomic, paths, simulator
from fetal_biometry.evaluation import scans as evaluation
from fetal_biometry.io import dataset
from fetal_biometry.nets import catalog, model as model_folder, solvers, spec as nets, training
from fetal_biometry.patches import encoding as patches, records as patch_records, \
    segment_records


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
#: The segmenter's candidate widths, spacings and class weightings (depth 4 fixed: the measured
#: starting point; a fifth pooling would shrink a 128-px tile to 4 px), the encoding they are
#: chosen with and the tie margin of its rule (docs/segmenter.md).
SEGMENTER_WIDTHS = (8, 16)
SEGMENTER_SPACINGS = (1.0, 1.5)
SEGMENTER_WEIGHTINGS = tuple(segment_records.WEIGHTINGS)
SEGMENTER_SIZE_ENCODING = "beam"
SEGMENTER_TIE = 0.01
#: The class weighting of segmenter jobs from before weightings were chosen: their names and
#: records name none, and stay so (the default, chosen since, is named).
UNNAMED_WEIGHTING = "sqrt"

#: Format constant: the name in the generator record of a dataset simulated at several sizes.
#: Frozen: it names the module as it was when the format began, not where the code lives now.
GENERATOR = "fetal_biometry.experiments"


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
        {"name": GENERATOR, "sides": list(recipe.sides), "parts": parts}
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
    (``simulator.NARROW``: the first round's narrow ranges) or ``no-GROUP`` (TRAINING with one
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
    #: The segmenter's class weighting (:data:`fetal_biometry.patches.segment_records.WEIGHTINGS`).
    weighting: str = segment_records.WEIGHTING

    @property
    def segmenter(self) -> bool:
        return self.kind == model_folder.SEGMENTER

    @property
    def name(self) -> str:
        if self.segmenter:
            weighting = "" if self.weighting == UNNAMED_WEIGHTING else f"-{self.weighting}"
            return (f"segmenter-{self.encoding}-{self.scans}scans-seed{self.seed}-{self.variant}-"
                    f"w{self.width}-{self.spacing_mm:g}mm-aug{self.augment}-it{self.iterations}{weighting}")
        return (f"{self.encoding}-{self.scans}scans-seed{self.seed}-{self.variant}-"
                f"patch{self.patch}-aug{self.augment}-it{self.iterations}")

    def record(self) -> dict:
        """The job as stored in its records: a patch classifier's without the segmenter's fields,
        as before segmenters existed, and a segmenter's without :data:`UNNAMED_WEIGHTING`, as
        before weightings were chosen, so their earlier records stay current."""
        fields = dataclasses.asdict(self)
        if not self.segmenter:
            for key in ("kind", "width", "spacing_mm", "weighting"):
                del fields[key]
        else:
            del fields["patch"]
            if self.weighting == UNNAMED_WEIGHTING:
                del fields["weighting"]
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
        """The job's evaluation record on set ``name`` (:func:`fetal_biometry.evaluation.scans.evaluate`)."""
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
                (not job.segmenter or made.get("balance", {}).get("method")
                 == segment_records.balance_method("median", job.weighting)):
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
                              sources=sources, weighting=job.weighting)
        return True
    pool = dataset.open(setup.training_data(job.variant)[0])
    validation = dataset.open(setup.evaluation_set("validation")[0])
    chosen = training_scans(pool.cases, job.scans, job.seed)
    # Both datasets name their cases sim00000...: the validation scans get a prefix.
    scans = [dataset.Scan(prefix + c.name, c.image, c.labels, c.geometry, c.spacing_mm)
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
            and solvers.snapshot_iteration(state) == job.iterations)


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
                                  val_tiles=4 * setup.val_cases,
                                  classes=len(segment_records.read_manifest(lmdbs)["classes"]))
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
        if solvers.snapshot_iteration(path) != job.iterations:
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
    """The :class:`Job` of a stored job record (:meth:`Job.record`): a segmenter's that names
    no weighting has :data:`UNNAMED_WEIGHTING`."""
    if record.get("kind") == model_folder.SEGMENTER:
        record = {"weighting": UNNAMED_WEIGHTING, **record}
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

    with _simulating(setup):
        stale = [(p, r) for p, r in datasets(setup, jobs, sets).items() if not holds(p, r)]
        if not stale:
            return
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            for _ in tqdm(pool.map(_simulate, stale), total=len(stale), desc="simulate datasets",
                          unit="set"):
                pass


@contextlib.contextmanager
def _simulating(setup: Setup):
    """Held while datasets are checked and simulated: jobs started side by side as separate
    commands (a SLURM array, GNU parallel) simulate each dataset once, the others waiting."""
    folder = pathlib.Path(setup.data)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".simulating.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_spec(setup: Setup, job: Job, sets: Sequence[str]) -> pathlib.Path:
    """The job's job.json in its folder: what a worker runs (:func:`job_from_spec`)."""
    folder = setup.job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(folder / "job.json", json.dumps(
        {"job": job.record(), "sets": list(sets), "setup": setup.to_dict()}, indent=1) + "\n")


def run_alone(setup: Setup, job: Job, sets: Sequence[str]) -> dict:
    """One job as a command of its own (a task of a scheduler's array): simulates the datasets
    it needs unless another job is doing so, then trains and evaluates here; returns its record."""
    prepare(setup, [job], sets, workers=1)
    return run_job(*job_from_spec(_write_spec(setup, job, sets)))


def _worker(setup: Setup, job: Job, sets: Sequence[str]) -> tuple[Job, str | None]:
    """Run one job in its own process (log in its folder); returns the job and None or why it failed."""
    spec = _write_spec(setup, job, sets)
    folder = spec.parent
    # One core per worker; this very package (a checkout's or an installed one) first.
    path = [str(pathlib.Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    with open(folder / "log.txt", "a") as log:
        code = subprocess.run([sys.executable, "-m", "fetal_biometry.experiments.jobs", str(spec)], stdout=log,
                              stderr=subprocess.STDOUT, env=env).returncode
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


def main(argv: Sequence[str] | None = None) -> int:
    """A worker of :func:`run`: ``python -m fetal_biometry.experiments.jobs JOB_JSON`` runs the
    job its job.json describes; the output is the job's log."""
    [spec] = sys.argv[1:] if argv is None else argv
    try:
        run_job(*job_from_spec(spec))
    except (ExperimentError, training.TrainingError) as error:
        print(f"experiments: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # run by the module's own name, so that it is imported once
    from fetal_biometry.experiments.jobs import main as worker

    sys.exit(worker())
