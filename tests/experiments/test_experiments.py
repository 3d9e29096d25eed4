"""The experiments: which scans a seed trains on, datasets kept or simulated again, skipping
done jobs, mean +- sd tables, the learning curve, and one tiny job trained with real Caffe."""
import dataclasses
import importlib.util
import json
import shlex

import numpy as np
import pytest

from fetal_biometry import experiments, figures, simulator
from fetal_biometry.evaluation import scans as evaluation
from fetal_biometry.experiments import Job, Recipe, Setup, jobs as experiment_jobs
from fetal_biometry.io import dataset
from fetal_biometry.labels import CLASSIFIER_CLASSES
from fetal_biometry.measure import biometry, thresholds
from fetal_biometry.nets import model as model_folder
from fetal_biometry.patches import encoding as patches

from conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("experiments_tool", ROOT / "tools" / "experiments.py")
tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tool)

NAMES = [f"sim{i:05d}" for i in range(100)]


def test_a_seed_picks_nested_scans_and_all_of_them_at_the_pool_size():
    ten, twenty_five = (experiments.training_scans(NAMES, n, seed=1) for n in (10, 25))
    assert len(ten) == 10 == len(set(ten)) and set(ten) <= set(twenty_five)
    assert experiments.training_scans(NAMES, 10, seed=1) == ten  # seeded
    assert experiments.training_scans(NAMES, 10, seed=2) != ten
    assert experiments.training_scans(NAMES, 100, seed=2) == NAMES
    with pytest.raises(experiments.ExperimentError, match="101 training scans"):
        experiments.training_scans(NAMES, 101, seed=0)


def test_plans_reuse_the_ablation_and_vary_only_what_they_study():
    ablation, sets = experiments.ablation_plan()
    curve, curve_sets = experiments.learning_curve_plan()
    assert len(ablation) == 9 and set(ablation) <= set(curve) and len(curve) == 36
    assert sets == curve_sets == ("heldout", "foreign")
    sizes, on = experiments.patch_size_plan()
    assert [j.patch for j in sizes] == [24, 32, 40, 48] and on == ("validation",)
    assert len({j.name for j in curve + sizes}) == len(set(curve + sizes))  # one folder per job
    rows, _ = experiments.randomisations_plan()
    assert {(j.variant, j.augment) for j in rows} >= {("all", experiments.AUGMENT), ("none", 0), ("all", 0)}
    assert [j.variant for j in rows] == ["all", "none", "no-physics", "no-anatomy", "all"]
    by_group, _ = experiments.randomisations_plan(by_group=True)
    assert len(by_group) == len(experiments.groups()) + 3


def test_training_data_variants_name_their_appearance():
    setup = Setup()
    assert experiments.appearance(setup.training_data("all")[1]) == simulator.TRAINING
    folder, narrow = setup.training_data("none")
    assert folder.name == "pool-none" and experiments.appearance(narrow) == simulator.NARROW
    _, no_physics = setup.training_data("no-physics")
    assert experiments.appearance(no_physics).physics == simulator.NARROW.physics
    assert experiments.appearance(no_physics).anatomy == simulator.TRAINING.anatomy
    for group in experiments.groups():
        _, recipe = setup.training_data(f"no-{group}")
        assert experiments.appearance(recipe) == simulator.TRAINING.without(group)
    with pytest.raises(experiments.ExperimentError, match="unknown training data variant .no-such-group."):
        setup.training_data("no-such-group")


def test_the_foreign_set_is_rendered_a_third_each_at_three_sizes():
    foreign = experiments.RECIPES["foreign"]
    sides = [foreign.side(i) for i in range(foreign.count)]
    assert [sides.count(s) for s in (256, 384, 512)] == [10, 10, 10]
    assert foreign.appearance == "FOREIGN" and experiments.RECIPES["pool"].appearance == "TRAINING"


def test_a_dataset_is_simulated_again_when_its_generator_record_differs(tmp_path):
    recipe = Recipe(seed=5, count=2, sides=(64, 96), probe="convex")
    path = tmp_path / "set"
    assert experiments.simulated(path, recipe, progress=False)
    opened = dataset.open(path)
    assert [opened.read(n).image.shape for n in opened.cases] == [(64, 64), (96, 96)]
    assert experiments.holds(path, recipe) and not experiments.simulated(path, recipe, progress=False)
    assert not experiments.holds(path, dataclasses.replace(recipe, count=3))
    index = json.loads((path / "dataset.json").read_text())
    index["generator"]["parts"][0]["version"] = "0.0.0"  # what an older simulator wrote
    (path / "dataset.json").write_text(json.dumps(index))
    assert experiments.simulated(path, recipe, progress=False)
    assert experiments.holds(path, recipe)


def _summary(accuracy: float, ac_error: float | None, cases: int = 30) -> dict:
    return {"cases": cases, "pixel_accuracy": accuracy,
            "per_class_accuracy": {c: accuracy for c in CLASSIFIER_CLASSES},
            "plane_acceptance_accuracy": accuracy, "ac_measured": 0 if ac_error is None else 28,
            "ac_median_error_percent": ac_error, "ac_p90_error_percent": None if ac_error is None else 2 * ac_error}


def _record(encoding="channels", scans=100, seed=0, patch=40, accuracy=0.8, ac_error=1.0, sets=("heldout",)):
    job = dataclasses.asdict(Job(encoding, scans, seed, patch=patch))
    return {"job": job, "evaluations": {s: _summary(accuracy, ac_error) for s in sets}, "seconds": 1.0}


def test_mean_and_sample_sd_over_seeds_in_a_markdown_table():
    records = [_record(seed=s, accuracy=a, ac_error=e)
               for s, a, e in ((0, 0.80, 1.0), (1, 0.84, 2.0), (2, 0.88, None))]
    rows = experiments.aggregate(records, "heldout", lambda job: job["encoding"])
    row = rows["channels"]
    assert row["seeds"] == 3 and row["pixel_accuracy"]["mean"] == pytest.approx(0.84)
    assert row["pixel_accuracy"]["sd"] == pytest.approx(0.04)  # ddof 1
    assert row["ac_median"] == {"mean": 1.5, "sd": pytest.approx(np.std([1, 2], ddof=1)), "n": 2}
    text = experiments.table(rows, "encoding")
    header, rule, line = text.splitlines()
    assert header.startswith("| encoding | seeds | pixel acc. | fluid | stomach | vein | shadow | background |")
    assert rule.count("---") == header.count("|") - 1
    assert "| channels | 3 | 0.840 ± 0.040 |" in line
    assert "1.5 ± 0.7 % (2 of 3)" in line and "18.7 ± 16.2 / 30" in line
    assert line.endswith("| - | - |")  # no max AC error, no count off by 10 % in these summaries
    single = experiments.aggregate(records[:1], "heldout", lambda job: job["encoding"])
    assert "| channels | 1 | 0.800 |" in experiments.table(single, "encoding")


def test_the_randomisation_table_shows_what_leaving_each_out_changes():
    records = []
    for (variant, augment), accuracy, error in ((("all", 2), 0.85, 1.0), (("none", 0), 0.70, 3.5),
                                                (("all", 0), 0.82, None)):
        record = _record(accuracy=accuracy, ac_error=error, sets=("foreign",))
        record["job"].update(variant=variant, augment=augment)
        records.append(record)
    text, numbers = experiments.report("randomisations", Setup(), records, ("foreign",))
    assert list(numbers["foreign"]) == ["all randomisations, augmented x2",
                                        "none (the first round's narrow ranges), no augmentation",
                                        "all randomisations, no augmentation"]
    change = text.split("Change from *all randomisations, augmented x2*")[1]
    assert "| none (the first round's narrow ranges), no augmentation | -0.150 |" in change
    assert "| +2.5 % |" in change and "| all randomisations, no augmentation | -0.030 |" in change


def test_patch_size_rule_breaks_ties_by_ac_error():
    records = [_record(patch=24, accuracy=0.80, ac_error=0.5, sets=("validation",)),
               _record(patch=32, accuracy=0.852, ac_error=1.4, sets=("validation",)),
               _record(patch=40, accuracy=0.855, ac_error=1.1, sets=("validation",)),
               _record(patch=48, accuracy=0.83, ac_error=0.2, sets=("validation",))]
    chosen, rule = experiments.choose_patch(records)
    assert chosen == 40 and "32, 40 px" in rule
    records[2]["evaluations"]["validation"]["ac_median_error_percent"] = 1.6
    assert experiments.choose_patch(records)[0] == 32
    text, numbers = experiments.report("patch-size", Setup(), records, ("validation",))
    assert numbers["chosen"]["patch"] == 32 and "Chosen: **32 px**" in text and "| 24 px | 1 |" in text


def test_patch_size_rule_averages_over_seeds():
    records = [_record(patch=p, seed=seed, accuracy=a, ac_error=1.0, sets=("validation",))
               for p, seed, a in ((40, 0, 0.80), (40, 1, 0.82), (48, 0, 0.86), (48, 1, 0.74))]
    chosen, rule = experiments.choose_patch(records)  # 40: 0.81 on average, 48: 0.80
    assert chosen == 40 and "mean over 2 seed(s)" in rule
    jobs, _ = experiments.patch_size_plan((40, 48), seeds=(0, 1, 2))
    assert [(j.patch, j.seed) for j in jobs][:4] == [(40, 0), (40, 1), (40, 2), (48, 0)]
    assert {j.patch for j in experiments.learning_curve_plan(patch=48)[0]} == {48}


def test_learning_curve_is_drawn_from_the_results():
    records = [_record(e, n, s, accuracy=0.7 + n / 1000 + s / 100, sets=("heldout", "foreign"))
               for e in ("rotate", "channels", "none") for n in (10, 25, 50, 100) for s in (0, 1, 2)]
    numbers = experiments.curves(records)
    channels = numbers["foreign"]["channels"]
    assert channels["scans"] == [10, 25, 50, 100]
    assert channels["shadow"]["mean"][0] == pytest.approx(0.72)
    assert channels["shadow"]["sd"][0] == pytest.approx(0.01)
    fig = figures.learning_curve(numbers, experiments.PANELS, experiments.STYLES)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [title for _, title in experiments.PANELS]
    assert len(axes[0].get_lines()) == 6  # 3 encodings x 2 sets
    assert {line.get_linestyle() for line in axes[0].get_lines()} == {"-", "--"}
    assert axes[0].get_xscale() == "log"
    assert figures.figure_png(fig).startswith(b"\x89PNG")


def test_a_job_whose_summary_exists_is_skipped_unless_its_datasets_changed(tmp_path):
    setup = Setup(data=tmp_path / "data", runs=tmp_path / "runs")
    job = Job("none", 10, 1)
    record = {**_record("none", 10, 1, sets=("heldout", "foreign")),
              "training": experiment_jobs._sources(setup, job),
              "datasets": {s: experiments.generator(setup.recipes[s]) for s in ("heldout", "foreign")},
              "measured_under": {s: biometry.in_force() for s in ("heldout", "foreign")}}
    summary = setup.job_dir(job) / experiments.SUMMARY
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps(record))
    assert experiments.done(setup, job, ("heldout",)) and not experiments.done(setup, job, ("validation",))
    assert experiments.run(setup, [job], ("heldout", "foreign")) == [record]
    assert not (tmp_path / "data").exists()  # nothing simulated, nothing trained
    older = json.loads(json.dumps(record))
    older["datasets"]["foreign"]["parts"][0]["version"] = "0.0.0"  # a foreign set simulated since
    summary.write_text(json.dumps(older))
    assert experiments.done(setup, job, ("heldout",)) and not experiments.done(setup, job, ("foreign",))
    older["training"]["pool_generator"]["seed"] = 9  # the model learnt from another pool
    summary.write_text(json.dumps(older))
    assert not experiments.done(setup, job, ("heldout",))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny setup (96 px scans, a few of each set) and two 4-iteration jobs run by workers."""
    root = tmp_path_factory.mktemp("experiments")
    recipes = {"pool": Recipe(0, 3, sides=(96,)), "validation": Recipe(2, 2, sides=(96,)),
               "heldout": Recipe(1, 2, sides=(96,)),
               "foreign": Recipe(3, 2, appearance="FOREIGN", sides=(96, 128))}
    setup = Setup(root / "data", root / "runs", recipes, val_cases=1)
    jobs = [Job("channels", 2, seed, augment=1, iterations=4) for seed in (0, 1)]
    return setup, jobs, experiments.run(setup, jobs, ("heldout", "foreign"), workers=2)


@pytest.mark.slow  # trains two nets in worker processes
def test_a_tiny_job_trains_with_caffe_and_writes_its_summary(tiny):
    setup, jobs, records = tiny
    folder = setup.job_dir(jobs[0])
    model = model_folder.load(folder / "model")
    assert model.record["training"]["iterations"] == 4 and model.patch == patches.SIZE
    train = json.loads((folder / "job.json").read_text())["job"]
    assert train == jobs[0].record() and "kind" not in train  # as stored before segmenters
    assert set(records[0]["evaluations"]) == {"heldout", "foreign"}
    assert records[0]["evaluations"]["foreign"]["cases"] == 2
    assert not (folder / "lmdb").exists()  # removed once the model is trained
    assert [p.name for p in (folder / "model" / "snapshots").glob("*.caffemodel")] == ["net_iter_4.caffemodel"]
    sources = model.record["data"]["sources"]
    assert sources["job"]["seed"] == 0 and model.record["data"]["records"]["test"] == 0
    assert model.record["data"]["augment"]["copies"] == 1
    solver = (folder / "net" / "solver.prototxt").read_text()
    assert "random_seed: 0" in solver and "max_iter: 4" in solver


@pytest.mark.slow  # trains two nets in worker processes
def test_finished_jobs_are_not_run_again_and_report_mean_and_sd(tiny):
    setup, jobs, records = tiny
    stamps = [(setup.job_dir(j) / experiments.SUMMARY).stat().st_mtime_ns for j in jobs]
    assert experiments.run(setup, jobs, ("heldout",), workers=2) == records
    assert stamps == [(setup.job_dir(j) / experiments.SUMMARY).stat().st_mtime_ns for j in jobs]
    text, numbers = experiments.report("ablation", setup, records, ("heldout", "foreign"))
    assert "foreign check set (2 scans, seed 3, foreign, 96/128 px)" in text
    assert numbers["heldout"]["channels"]["seeds"] == 2 and "| channels | 2 |" in text
    weights = setup.job_dir(jobs[0]) / "model" / "snapshots" / "net_iter_4.caffemodel"
    stamp = weights.stat().st_mtime_ns
    [more] = experiments.run(setup, jobs[:1], ("validation",), workers=1)  # evaluated, not trained
    assert set(more["evaluations"]) == {"heldout", "foreign", "validation"}
    assert weights.stat().st_mtime_ns == stamp
    assert more["evaluations"]["heldout"] == records[0]["evaluations"]["heldout"]


def test_the_tool_refuses_more_training_scans_than_the_pool_holds(capsys):
    with pytest.raises(SystemExit) as exit_:
        tool.main(["learning-curve", "--scans", "500", "--dry-run"])
    assert exit_.value.code == 2 and "pool holds 100 scans" in capsys.readouterr().err


def test_a_plan_prints_one_standalone_command_per_job(capsys):
    argv = ["ablation", "--seeds", "0", "2", "--jobs", "3", "--print-jobs", "--iterations=40"]
    assert tool.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    jobs, sets = experiments.ablation_plan((0, 2), iterations=40)
    assert len(lines) == len(jobs) == 6
    for index, line in enumerate(lines):
        words = shlex.split(line)
        assert words[:3] == ["fetal-experiments", "job", "ablation"] and "--jobs" not in words
        args = tool.parser().parse_args(words[1:])
        assert args.index == index and tool.plan(args) == (jobs, sets)
        assert tool.plan(args)[0][args.index] == jobs[index]


def test_a_job_index_outside_the_plan_is_an_error_naming_the_count(capsys):
    assert tool.main(["job", "thresholds", "--seeds", "0", "--index", "3"]) == 1
    assert "--index 3: the thresholds plan has 3 job(s), 0 to 2" in capsys.readouterr().err


@pytest.mark.slow  # trains two nets in worker processes
def test_evaluations_under_other_limits_are_measured_again_from_their_maps(tiny):
    setup, jobs, records = tiny
    summary_file = setup.job_dir(jobs[1]) / experiments.SUMMARY
    record = json.loads(summary_file.read_text())
    assert record["measured_under"]["heldout"] == biometry.in_force()
    maps = evaluation.maps_file(setup.evaluation_record(jobs[1], "heldout"))
    stamp = maps.stat().st_mtime_ns
    record["measured_under"]["heldout"] = {"trust": {}, "plane": {}}  # as if chosen since
    summary_file.write_text(json.dumps(record))
    assert not experiments.done(setup, jobs[1], ("heldout",))
    [again] = experiments.run(setup, jobs[1:], ("heldout",), workers=1)
    assert again["measured_under"]["heldout"] == biometry.in_force()
    assert again["evaluations"]["heldout"] == records[1]["evaluations"]["heldout"]
    assert maps.stat().st_mtime_ns == stamp  # measured from the stored maps, not classified again


@pytest.mark.slow  # trains two nets in worker processes
def test_the_thresholds_plan_chooses_from_the_validation_maps(tiny):
    setup, jobs, _ = tiny
    records = experiments.run(setup, jobs, ("validation",), workers=2)
    choice, groups = experiments.choose_limits(setup, records, ("validation",))
    assert [len(results) for results in groups.values()] == [4]  # 2 nets x 2 validation scans
    assert set(choice.limits) == set(thresholds.LOOSEST)
    text, numbers = experiments.report("thresholds", setup, records, ("validation",))
    assert "MIN_COVERAGE = " in text and "VEIN_SKIN_MM = " in text and "| all |" in text
    assert numbers["chosen"]["limits"] == choice.limits


def test_a_tiny_segmenter_job_trains_and_is_evaluated_on_its_sets(tiny):
    setup = tiny[0]
    job = Job("beam", 2, 0, augment=1, iterations=4, kind=model_folder.SEGMENTER, width=4, spacing_mm=2.0)
    [record] = experiments.run(setup, [job], ("validation", "heldout"), workers=1)
    folder = setup.job_dir(job)
    assert folder.name.startswith("segmenter-beam-2scans-seed0-all-w4-2mm")
    model = model_folder.load(folder / "model")
    assert model.kind == model_folder.SEGMENTER and model.unet["width"] == 4 and model.spacing_mm == 2.0
    assert record["job"]["kind"] == "segmenter" and "patch" not in record["job"]
    assert 0 <= record["evaluations"]["heldout"]["abdomen_dice"] <= 1
    text, _ = experiments.report("segmenter", setup, [record], ("heldout",))
    assert "| segmenter, beam | 1 |" in text and "abdomen Dice" in text
    # With the validation set the segmented abdomen's limits and margin are chosen on it alone.
    text, numbers = experiments.report("segmenter", setup, [record], ("validation", "heldout"))
    assert "chosen on validation (1 nets; copy into fetal_biometry/measure/abdomen.py)" in text
    assert "DISAGREEMENT = " in text and set(numbers["chosen"]["limits"]) == set(thresholds.SEGMENTER_LOOSEST)


def test_segmenter_rule_takes_the_cheaper_of_tied_configurations():
    def record(width, spacing, dice, weighting="sqrt", ac=1.0):
        job = Job("beam", 100, 0, kind=model_folder.SEGMENTER, width=width, spacing_mm=spacing,
                  weighting=weighting).record()
        return {"job": job, "evaluations": {"validation": {"per_class_dice": {"a": dice, "b": dice},
                                                           "ac_median_error_percent": ac}}}

    records = [record(8, 1.0, 0.800), record(8, 1.5, 0.795), record(16, 1.0, 0.830), record(16, 1.5, 0.70)]
    assert experiments.choose_segmenter(records)[0] == (16, 1.0, "sqrt")
    records[2] = record(16, 1.0, 0.805)  # within 0.01 of it: the cheaper wins
    (width, spacing, weighting), rule = experiments.choose_segmenter(records)
    assert (width, spacing) == (8, 1.5) and "the cheaper wins" in rule
    # Weightings cost the same: among tied ones the smaller median AC error wins.
    records = [record(8, 1.0, 0.800, "sqrt", ac=1.2), record(8, 1.0, 0.805, "full", ac=0.9)]
    assert experiments.choose_segmenter(records)[0] == (8, 1.0, "full")
    records[1] = record(8, 1.0, 0.805, "full", ac=1.5)
    assert experiments.choose_segmenter(records)[0] == (8, 1.0, "sqrt")


def test_jobs_from_before_weightings_were_chosen_keep_their_names_and_records():
    plain = Job("beam", 100, 0, kind=model_folder.SEGMENTER, weighting="sqrt")
    full = Job("beam", 100, 0, kind=model_folder.SEGMENTER)  # the chosen default
    assert "weighting" not in plain.record() and plain.name.endswith("-it1500")
    assert full.record()["weighting"] == "full" and full.name == plain.name + "-full"
    assert experiments.job_of(full.record()) == full and experiments.job_of(plain.record()) == plain
