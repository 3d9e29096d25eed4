"""The panel experiments: a segmenter of mixed planes (abdomen, head, femur, unfit ones among
them) trained with three seeds and evaluated per structure (:mod:`fetal_biometry.evaluation.panel`).

**Datasets**, simulated once under ``data/experiments/panel/`` (:data:`SETS`) and again when
the generator record their dataset.json holds differs from what the simulator would write now:

==========  ====  =====  ========  =========================================================
set         seed  scans  unfit     what for
==========  ====  =====  ========  =========================================================
pool        100   120    30 %      training scans: mixed planes, probes and ``TRAINING`` looks
validation  102   60     25 %      where anything is chosen (trust limits, the recipe)
heldout     101   90     25 %      reported: about a third each of abdomen, head and femur
hc18        103   20     none      transthalamic heads written in HC18's layout and imported
                                   (``tools/import_dataset.py --format hc18``): HC18's HC error
==========  ====  =====  ========  =========================================================

**A job** is one seed of :data:`RECIPE`: the pool's records of the class table "panel"
(``channels`` encoding, 1 mm per pixel, 128-px tiles, two augmented copies), the seed drawing
the 85 % of the pool that trains (the rest watch training), the segmenter of
:func:`fetal_biometry.nets.catalog.segmenter` (U-Net width 8, 1500 Adam iterations, the seed
as ``random_seed``), then the evaluation on each set. Everything a job makes lives in
``runs/experiments/panel/seed<S>/``; what is complete is reused (datasets, records, the
trained model, each set's evaluation) and an interrupted training resumes from its last
snapshot, so :func:`run` continues where a stopped run ended; finished evaluations are measured
again from their kept maps on every run (rules chosen since apply). One job of 1500 iterations
costs about 6 minutes of one core alone (14 on the shared machine), one of 3000 twice that.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
from typing import Callable, Sequence

import numpy as np
from google.protobuf import text_format

from fetal_biometry import atomic, paths, simulator
from fetal_biometry.evaluation import panel as evaluation
from fetal_biometry.io import dataset
from fetal_biometry.nets import catalog, model as model_folder, training
from fetal_biometry.patches import segment_records

SEEDS = (0, 1, 2)
EVALUATION_SETS = ("validation", "heldout", "hc18")


@dataclasses.dataclass(frozen=True)
class Set:
    """How one dataset is simulated: seed, scans, unfit share, planes (``hc18``: heads in HC18's layout)."""

    seed: int
    count: int
    unacceptable_share: float
    plane: str = "mixed"

    def generator(self) -> dict:
        """The generator record its dataset.json holds (as JSON reads it back)."""
        return json.loads(json.dumps(simulator.generator_record(
            self.seed, SHAPE, PROBE, self.unacceptable_share, simulator.TRAINING, self.plane)))


SHAPE, PROBE = (256, 256), "mixed"
SETS = {"pool": Set(100, 120, 0.3), "validation": Set(102, 60, 0.25), "heldout": Set(101, 90, 0.25),
        "hc18": Set(103, 20, 0.0, "head")}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The mixed-plane segmenter's recipe (cheap: about 5.5 minutes of one core to train)."""

    encoding: str = "channels"
    spacing_mm: float = 1.0
    tile: int = 128
    augment: int = 2
    width: int = 8
    iterations: int = 1500
    train_share: float = 0.85
    #: Class weights' reference (segment_records.BALANCES): with the abdomen's "median" the
    #: first run (seed 0) learnt no skull, femur, stomach or vein in 1500 iterations.
    balance: str = "uniform"


RECIPE = Recipe()


def data_root() -> pathlib.Path:
    return paths.root() / "data" / "experiments" / "panel"


def runs_root() -> pathlib.Path:
    return paths.root() / "runs" / "experiments" / "panel"


def _current(folder: pathlib.Path, generator: dict) -> bool:
    try:
        return dataset.open(folder).generator == generator
    except (dataset.DatasetError, OSError, ValueError):
        return False


def make_set(name: str, root: pathlib.Path | None = None, progress=None,
             specs: dict[str, Set] | None = None) -> pathlib.Path:
    """The dataset ``name`` of ``specs`` (:data:`SETS`) under ``root``, simulated unless current."""
    root = root or data_root()
    spec = (specs or SETS)[name]
    folder = root / name
    generator = spec.generator()
    if _current(folder, generator):
        return folder
    cases = simulator.simulate(spec.count, spec.seed, SHAPE, PROBE, spec.unacceptable_share,
                               simulator.TRAINING, spec.plane)
    if progress:
        cases = progress(cases, desc=name, total=spec.count)
    if name != "hc18":
        return dataset.write_dataset(folder, cases, generator=generator)
    from fetal_biometry import importers
    from fetal_biometry.simulator import hc18

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.resolve()) as tmp:
        hc18.write(pathlib.Path(tmp) / "layout", cases)
        layout = pathlib.Path(tmp) / "layout"
        imported, _ = importers.import_dataset(
            "hc18", layout / "training_set", pathlib.Path(tmp) / "imported",
            importers.Options(spacing_csv=layout / hc18.CSV_NAME, geometry=layout / "geometry"))
        cases = list(dataset.open(imported).iter_cases())
    return dataset.write_dataset(folder, cases, generator=generator)


def train(seed: int, pool: pathlib.Path, folder: pathlib.Path, recipe: Recipe = RECIPE) -> pathlib.Path:
    """The job's model folder: records of the pool and the trained segmenter (reused when complete)."""
    records = folder / "records"
    if not (records / segment_records.MANIFEST).is_file():
        segment_records.build(dataset.open(pool), records, recipe.encoding, recipe.spacing_mm, recipe.tile,
                              (recipe.train_share, 1 - recipe.train_share, 0.0), seed, recipe.augment,
                              classes="panel", balance=recipe.balance)
    classes = len(segment_records.read_manifest(records)["classes"])
    files = catalog.segmenter(str(folder / "net"), str(records), str(folder / "model" / "snapshots" / "net"),
                              random_seed=seed, max_iter=recipe.iterations, width=recipe.width,
                              val_tiles=32, classes=classes)
    for path, message in files.items():
        atomic.write_text(path, text_format.MessageToString(message))
    training.trained(folder / "net" / "solver.prototxt", folder / "model")
    return folder / "model"


def _record_file(folder: pathlib.Path, name: str) -> pathlib.Path:
    """The evaluation record of set ``name`` in a job's folder (the model folder is named model)."""
    return folder / "evaluation" / name / "model.json"


def _made_by(record: dict) -> tuple:
    """What a job's files depend on: the recipe but its iterations (a longer run resumes), the data."""
    recipe = {k: v for k, v in (record.get("recipe") or {}).items() if k != "iterations"}
    return recipe, record.get("data")


def run(seeds: Sequence[int] = SEEDS, sets: Sequence[str] = EVALUATION_SETS, data: pathlib.Path | None = None,
        runs: pathlib.Path | None = None, recipe: Recipe = RECIPE, progress=None,
        say: Callable[[str], None] = print, specs: dict[str, Set] | None = None) -> list[dict]:
    """Run (or continue) the jobs of ``seeds``; each job's record ``{"seed", "recipe", "data",
    "evaluations": {set: summary}}``, also written to its ``summary.json``. ``specs`` replace
    :data:`SETS` (smaller sets for a quick check)."""
    data, runs, specs = data or data_root(), runs or runs_root(), specs or SETS
    pool = make_set("pool", data, progress, specs)
    folders = {name: make_set(name, data, progress, specs) for name in sets}
    records = []
    for seed in seeds:
        folder = runs / f"seed{seed}"
        summary_file = folder / "summary.json"
        record = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        wanted = {"seed": seed, "recipe": dataclasses.asdict(recipe),
                  "data": {n: spec.generator() for n, spec in specs.items()}}
        if _made_by(record) != _made_by(wanted) and folder.exists():
            shutil.rmtree(folder)  # another recipe or other data: start afresh (more iterations resume)
        if {k: record.get(k) for k in wanted} != wanted:
            record = {**wanted, "evaluations": {}}
        for name in [n for n in sets if n in record["evaluations"]]:  # measured again from the kept
            record["evaluations"][name] = evaluation.remeasure(_record_file(folder, name))  # maps
        missing = [n for n in sets if n not in record["evaluations"]]
        if missing:
            say(f"seed {seed}: training (resumes if interrupted), then evaluating on {', '.join(missing)}")
            model = model_folder.load(train(seed, pool, folder, recipe))
            for name in missing:
                record["evaluations"][name] = evaluation.evaluate(model, folders[name], folder / "evaluation" / name,
                                                                  progress)
                atomic.write_text(summary_file, json.dumps(record, indent=1) + "\n")
        atomic.write_text(summary_file, json.dumps(record, indent=1) + "\n")
        records.append(record)
    return records


# ----------------------------------------------------------------------------- aggregation

def _values(records: Sequence[dict], name: str, path: Sequence[str]) -> list[float]:
    found = []
    for record in records:
        value = record["evaluations"][name]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            found.append(float(value))
    return found


def _cell(values: list[float], digits: int = 2, unit: str = "") -> str:
    if not values:
        return "-"
    sd = f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{np.mean(values):.{digits}f}{sd}{unit}"


def _goal(values: list[float], goal: float, lower_is_better: bool = True) -> str:
    if not values:
        return "-"
    worst = max(values) if lower_is_better else min(values)
    met = worst <= goal if lower_is_better else worst >= goal
    return "met (every seed)" if met else f"not met: worst seed {worst:.3g} (goal {goal:g})"


def table(records: Sequence[dict], name: str = "heldout") -> str:
    """Mean ± sd over seeds on the set ``name`` (markdown): each head and femur measurement's
    median and 90th-percentile absolute error and share of acceptable planes measured, the
    cephalic index, FL, AC, plane type, unfit planes measured as fit; each against its goal."""
    g = evaluation.GOALS
    rows = ["| measurement | median abs. error | 90th pct. | measured (of acceptable) | goal: median / p90 / measured |",
            "|" + " --- |" * 5]
    for key in ("HC", "BPD_OO", "BPD_OI", "OFD"):
        med = _values(records, name, ("measurements", key, "percent", "median"))
        p90 = _values(records, name, ("measurements", key, "percent", "p90"))
        share = _values(records, name, ("measurements", key, "measured_share"))
        rows.append(f"| {key} | {_cell(med, 2, ' %')} | {_cell(p90, 2, ' %')} | {_cell(share, 2)} | "
                    f"{_goal(med, g['median_percent'])} / {_goal(p90, g['p90_percent'])} / "
                    f"{_goal(share, g['measured_share'], False)} |")
    med = _values(records, name, ("measurements", "FL", "mm", "median"))
    p90 = _values(records, name, ("measurements", "FL", "mm", "p90"))
    share = _values(records, name, ("measurements", "FL", "measured_share"))
    rows.append(f"| FL | {_cell(med, 2, ' mm')} | {_cell(p90, 2, ' mm')} | {_cell(share, 2)} | "
                f"{_goal(med, g['fl_median_mm'])} / {_goal(p90, g['fl_p90_mm'])} / - |")
    med = _values(records, name, ("measurements", "AC", "percent", "median"))
    p90 = _values(records, name, ("measurements", "AC", "percent", "p90"))
    share = _values(records, name, ("measurements", "AC", "measured_share"))
    rows.append(f"| AC | {_cell(med, 2, ' %')} | {_cell(p90, 2, ' %')} | {_cell(share, 2)} | (#24's goals) |")
    ci = _values(records, name, ("cephalic_index", "within_share"))
    ci_med = _values(records, name, ("cephalic_index", "error", "median"))
    rows.append(f"| CI | {_cell(ci_med, 3)} | - | within 0.03: {_cell(ci, 2)} | "
                f"{_goal(ci, g['ci_share'], False)} |")
    rows += ["", "The measurement alone (every acceptable plane the value was found on, the plane "
                 "verdict aside):", "",
             "| measurement | found on | median abs. error | 90th pct. |", "|" + " --- |" * 4]
    for key in ("HC", "BPD_OO", "BPD_OI", "OFD", "FL", "AC"):
        found = _values(records, name, ("measurements", key, "verdict_aside", "measured"))
        unit, part = (" mm", "mm") if key == "FL" else (" %", "percent")
        med = _values(records, name, ("measurements", key, "verdict_aside", part, "median"))
        p90 = _values(records, name, ("measurements", key, "verdict_aside", part, "p90"))
        acceptable = _values(records, name, ("measurements", key, "acceptable"))
        rows.append(f"| {key} | {_cell(found, 0)} of {_cell(acceptable, 0)} | {_cell(med, 2, unit)} | "
                    f"{_cell(p90, 2, unit)} |")
    accuracy = _values(records, name, ("plane_type_accuracy",))
    unfit = _values(records, name, ("unfit_accepted_share",))
    cases = records[0]["evaluations"][name]["cases"] if records else 0
    rows += ["", f"Plane type right: {_cell(accuracy, 3)} of {cases} planes ({_goal(accuracy, g['plane_type'], False)}); "
                 f"unfit planes measured as fit: {_cell(unfit, 3)} ({_goal(unfit, g['unfit_accepted'])}); "
                 f"{len(records)} seeds."]
    return "\n".join(rows)


def hc18_table(records: Sequence[dict]) -> str:
    """HC18's HC error through the net, mean ± sd over seeds."""
    med = _values(records, "hc18", ("measurements", "HC", "mm", "median"))
    pct = _values(records, "hc18", ("measurements", "HC", "percent", "median"))
    p90 = _values(records, "hc18", ("measurements", "HC", "mm", "p90"))
    share = _values(records, "hc18", ("measurements", "HC", "measured_share"))
    aside = [_values(records, "hc18", ("measurements", "HC", "verdict_aside", *k))
             for k in (("measured",), ("mm", "median"), ("percent", "median"), ("mm", "p90"))]
    return (f"| HC18 layout (simulated heads) | median abs. error {_cell(med, 2, ' mm')} ({_cell(pct, 2, ' %')}) | "
            f"90th pct. {_cell(p90, 2, ' mm')} | measured {_cell(share, 2)} |\n"
            f"| the same, plane verdict aside | median abs. error {_cell(aside[1], 2, ' mm')} "
            f"({_cell(aside[2], 2, ' %')}) | 90th pct. {_cell(aside[3], 2, ' mm')} | found on {_cell(aside[0], 0)} |")
