#!/usr/bin/env python3
"""The experiments: trainings over seeds, training set sizes, patch sizes and the
simulator's randomisations, with mean +- sd tables (fetal_biometry.experiments).

Each job trains one patch classifier (1500 Adam iterations, make demo's solver) and evaluates
it; about {minutes} minutes per job on one free core, so two workers (--jobs 2, the default)
do about {per_hour:.0f} jobs an hour. Jobs already done are skipped: run a command again after
an interruption and it carries on (an interrupted training resumes from its last snapshot).
Datasets are simulated first into data/experiments/ (about a minute each, once).

  patch-size      channels, 100 scans, seed 0, patch 24/32/40/48 px, on the VALIDATION set;
                  picks a size by its stated rule (then set patches.SIZE)      4 trainings
  ablation        3 encodings x 3 seeds at 100 scans, on held-out and foreign  9 trainings
  learning-curve  10/25/50/100 scans x 3 encodings x 3 seeds (the ablation's
                  100-scan jobs reused); tables and docs/learning_curve.png   36 (27 new)
  randomisations  channels, 100 scans, seed 0: all randomisations, none, each
                  group of simulator.Appearance left out, no augmentation;
                  on the foreign set                                groups + 3 trainings
  thresholds      the ablation's nets on the two VALIDATION sets; chooses the
                  AC trust limits and plane thresholds (fetal_biometry.measure.thresholds)
                  to copy into fetal_biometry/measure/biometry.py       the ablation's 9

The segmenter (a U-Net over whole scans, fetal_biometry.segmentation; about {seg_minutes}
minutes per job):

  segmenter-size  beam, 100 scans, U-Net width 8/16 x spacing 1.0/1.5 mm x class
                  weights sqrt/full, on the VALIDATION set; picks by the rule
                  written down before the run (experiments.choose_segmenter)  8 trainings
  segmenter       none/channels/beam x 3 seeds at 100 scans, on validation,
                  held-out and foreign; chooses the segmented abdomen's trust
                  limits, disagreement margin and plane thresholds on the
                  VALIDATION set (to copy into fetal_biometry/measure/abdomen.py)
                  (--weighting: the class weights segmenter-size chose)  9 trainings
  segmenter-curve 10/25/50/100 scans x 3 encodings x 3 seeds (the 100-scan
                  jobs are the segmenter plan's)                        36 (27 new)

Every evaluation keeps its class maps: once new limits are in biometry.py, running a command
again measures its evaluations anew from those maps (seconds, no Caffe) and rewrites its tables.

Results: runs/experiments/<command>.md (markdown tables to paste into docs/results.md) and .json;
one folder per job under runs/experiments/jobs/ (model, evaluations, log.txt). --dry-run
lists the jobs and the time they would take.

On a cluster, each job is a command of its own: --print-jobs prints one line per job,
`fetal-experiments job COMMAND [its options] --index N`, for a SLURM array
(--index $SLURM_ARRAY_TASK_ID) or GNU parallel; the first jobs simulate the datasets, the
others wait for them. Afterwards COMMAND --finished writes the tables. data/ and runs/ are
taken from the checkout the package sits in, or from the working directory once installed.
"""
import argparse
import json
import os
import pathlib
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic, cli, experiments, figures, paths  # noqa: E402
from fetal_biometry.nets import catalog, spec as nets, training  # noqa: E402
from fetal_biometry.patches import encoding as patches, scan_encoding, segment_records  # noqa: E402

__doc__ = __doc__.format(minutes=experiments.JOB_MINUTES, per_hour=2 * 60 / experiments.JOB_MINUTES,
                         seg_minutes=experiments.SEGMENTER_JOB_MINUTES)

PLANS = {
    "patch-size": "choose the patch size on the validation set (4 trainings)",
    "ablation": "3 encodings x 3 seeds at 100 scans, held-out and foreign (9 trainings)",
    "learning-curve": "10/25/50/100 scans x 3 encodings x 3 seeds (36 trainings, 9 shared with ablation)",
    "randomisations": "what each simulator randomisation bought, on the foreign set (5 trainings: "
                      "all, none, no physics, no anatomy, no augmentation; --by-group: one per group)",
    "thresholds": "choose the AC trust limits and plane thresholds on the validation sets with "
                  "the ablation's nets",
    "segmenter-size": "choose the segmenter's U-Net width, spacing and class weights on the validation "
                      "set (8 trainings; --widths/--spacings/--weightings run fewer)",
    "segmenter": "the segmenter's 3 encodings x 3 seeds at 100 scans, validation, held-out and foreign "
                 "(9 trainings)",
    "segmenter-curve": "the segmenter at 10/25/50/100 scans x 3 encodings x 3 seeds (36 trainings, 9 "
                       "shared with segmenter)",
}
SEGMENTER_PLANS = ("segmenter-size", "segmenter", "segmenter-curve")
FIGURES = {"learning-curve": "learning_curve.png", "segmenter-curve": "segmenter_learning_curve.png"}


RUNNER_OPTIONS = {"--jobs": 1, "--dry-run": 0, "--finished": 0, "--print-jobs": 0}  # and their values


def plan(args) -> experiments.Plan:
    command = args.plan if args.command == "job" else args.command
    common = dict(augment=args.augment, iterations=args.iterations)
    if command == "segmenter-size":
        return experiments.segmenter_size_plan(args.widths, args.spacings, args.weightings, args.seeds,
                                               encoding=args.encoding, **common)
    if command in ("segmenter", "segmenter-curve"):
        common.update(width=args.width, spacing_mm=args.spacing_mm, weighting=args.weighting)
        if command == "segmenter":
            return experiments.segmenter_plan(args.seeds, **common)
        return experiments.segmenter_curve_plan(args.scans, args.seeds, **common)
    if command == "patch-size":
        return experiments.patch_size_plan(args.sizes, args.seeds, **common)
    common["patch"] = args.patch
    if command == "ablation":
        return experiments.ablation_plan(args.seeds, **common)
    if command == "thresholds":
        return experiments.thresholds_plan(args.seeds, **common)
    if command == "learning-curve":
        return experiments.learning_curve_plan(args.scans, args.seeds, **common)
    return experiments.randomisations_plan(**common, by_group=args.by_group)


def job_lines(argv: list[str], count: int) -> list[str]:
    """One command line per job of the plan ``argv`` names (its runner options dropped)."""
    words, given = [], iter(argv)
    for word in given:
        name = word.split("=", 1)[0]
        if name not in RUNNER_OPTIONS:
            words.append(word)
        elif RUNNER_OPTIONS[name] and "=" not in word:
            next(given, None)  # its value
    return [shlex.join(["fetal-experiments", "job", *words, "--index", str(i)]) for i in range(count)]


def parser() -> argparse.ArgumentParser:
    # No abbreviated options: --print-jobs repeats the plan's options by their names.
    top = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in PLANS.items():
        sub = commands.add_parser(name, help=text, description=text, allow_abbrev=False)
        sub.add_argument("--jobs", type=cli.at_least_one, default=2,
                         help="jobs in parallel, one process and core each (default 2)")
        sub.add_argument("--dry-run", action="store_true", help="list the jobs and their cost, run nothing")
        sub.add_argument("--finished", action="store_true",
                         help="report the jobs finished so far (listing the others), training "
                              "nothing: finished trainings are measured again under today's "
                              "limits from their stored maps")
        sub.add_argument("--print-jobs", action="store_true",
                         help="print one command line per job (for a SLURM array or GNU parallel), "
                              "run nothing")
        _plan_options(sub, name)
    job = commands.add_parser("job", help="run one job of a plan here, by its index (--print-jobs "
                                          "lists them)", description="run one job of a plan here")
    plans = job.add_subparsers(dest="plan", required=True, metavar="COMMAND")
    for name, text in PLANS.items():
        one = plans.add_parser(name, help=text, description=text, allow_abbrev=False)
        one.add_argument("--index", type=int, required=True, metavar="N",
                         help="which job of the plan, from 0 (the order of --print-jobs)")
        _plan_options(one, name)
    return top


def _plan_options(sub: argparse.ArgumentParser, name: str) -> None:
    """The options that choose a plan's jobs."""
    sub.add_argument("--iterations", type=cli.at_least_one,
                     default=catalog.SEGMENTER_ITERATIONS if name in SEGMENTER_PLANS
                     else catalog.FETAL_ITERATIONS,
                     help="Adam iterations per training (default %(default)s, as make demo)")
    sub.add_argument("--augment", type=int, default=experiments.AUGMENT,
                     help="augmented copies per patch in the LMDBs (default %(default)s; 0: none)")
    if name in SEGMENTER_PLANS:
        sub.add_argument("--seeds", type=int, nargs="+",
                         default=[0] if name == "segmenter-size" else list(experiments.SEEDS),
                         help="training seeds (default %(default)s)")
        if name == "segmenter-size":
            sub.add_argument("--widths", type=cli.at_least_one, nargs="+",
                             default=list(experiments.SEGMENTER_WIDTHS), help="U-Net widths (default 8 16)")
            sub.add_argument("--spacings", type=float, nargs="+",
                             default=list(experiments.SEGMENTER_SPACINGS),
                             help="model spacings, mm per pixel (default 1.0 1.5)")
            sub.add_argument("--weightings", nargs="+", choices=experiments.SEGMENTER_WEIGHTINGS,
                             default=list(experiments.SEGMENTER_WEIGHTINGS),
                             help="class weightings (default sqrt full; docs/segmenter.md)")
            sub.add_argument("--encoding", choices=scan_encoding.ENCODINGS,
                             default=experiments.SEGMENTER_SIZE_ENCODING,
                             help="the encoding the choice is made with (default %(default)s)")
        else:
            sub.add_argument("--width", type=cli.at_least_one, default=nets.UNET_WIDTH,
                             help="U-Net width (default %(default)s)")
            sub.add_argument("--spacing-mm", type=float, default=segment_records.SPACING_MM,
                             help="model spacing, mm per pixel (default %(default)s)")
            sub.add_argument("--weighting", choices=tuple(segment_records.WEIGHTINGS),
                             default=segment_records.WEIGHTING,
                             help="class weights (default %(default)s; docs/segmenter.md)")
        if name == "segmenter-curve":
            sub.add_argument("--scans", type=cli.at_least_one, nargs="+", default=list(experiments.SCANS),
                             help="training set sizes (default 10 25 50 100; the pool holds 100)")
            sub.add_argument("--figure", type=pathlib.Path,
                             help=f"where the learning curve goes (default docs/{FIGURES[name]})")
    elif name == "patch-size":
        sub.add_argument("--seeds", type=int, nargs="+", default=[0],
                         help="training seeds (default 0); the rule averages over them")
    else:
        sub.add_argument("--patch", type=cli.at_least_one, default=patches.SIZE,
                         help="patch side in px (default %(default)s, patches.SIZE)")
    if name in ("ablation", "learning-curve", "thresholds"):
        sub.add_argument("--seeds", type=int, nargs="+", default=list(experiments.SEEDS),
                         help="training seeds (default 0 1 2)")
    if name == "learning-curve":
        sub.add_argument("--scans", type=cli.at_least_one, nargs="+", default=list(experiments.SCANS),
                         help="training set sizes (default 10 25 50 100; the pool holds 100)")
        sub.add_argument("--figure", type=pathlib.Path,
                         help=f"where the learning curve goes (default docs/{FIGURES[name]})")
    if name == "randomisations":
        sub.add_argument("--by-group", action="store_true",
                         help="leave out each randomisation group in turn (8 trainings) instead of "
                              "each half (physics, anatomy)")
    if name == "patch-size":
        sub.add_argument("--sizes", type=cli.at_least_one, nargs="+", default=list(experiments.PATCH_SIZES),
                         help="patch sides in px (default 24 32 40 48)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    pool = experiments.RECIPES["pool"].count
    if any(n > pool for n in getattr(args, "scans", ())):
        parser().error(f"--scans: the training pool holds {pool} scans; ask for at most {pool}")
    figure = args.figure.resolve() if getattr(args, "figure", None) else None
    os.chdir(paths.root())  # data/ and runs/ are relative to it
    try:
        setup = experiments.Setup()
        jobs, sets = plan(args)
        if args.command == "job":
            if not 0 <= args.index < len(jobs):
                raise experiments.ExperimentError(
                    f"--index {args.index}: the {args.plan} plan has {len(jobs)} job(s), 0 to "
                    f"{len(jobs) - 1} (--print-jobs lists them)")
            experiments.run_alone(setup, jobs[args.index], sets)
            print(f"{jobs[args.index].name}: done, in {setup.job_dir(jobs[args.index])}")
            return 0
        if args.print_jobs:
            print("\n".join(job_lines(argv, len(jobs))))
            return 0
        todo = [j for j in jobs if not experiments.done(setup, j, sets)]
        wall = experiments.minutes(setup, todo, sets) / min(args.jobs, max(1, len(todo)))
        took = f"{wall / 60:.1f} h" if wall >= 60 else f"{wall:.0f} min"
        print(f"{args.command}: {len(jobs)} job(s), {len(todo)} to run, evaluated on "
              f"{', '.join(sets)}; about {took} with {args.jobs} worker(s)")
        if args.dry_run:
            for j in jobs:
                print(f"  {'todo' if j in todo else 'done'}  {j.name}")
            return 0
        if args.finished:
            # Finished trainings measured under older limits are measured again from their maps
            # (seconds), and evaluated on a set they lack; no training starts.
            trained = [j for j in todo if experiments.trained(setup, j)]
            for j in trained:
                experiments.run_job(setup, j, sets)
            todo = [j for j in todo if j not in trained]
            missing = [j.name for j in todo]
            jobs = [j for j in jobs if j not in todo]
            if not jobs:
                raise experiments.ExperimentError("no job of this command has finished yet")
            print(f"reporting {len(jobs)} finished job(s); not run yet: {', '.join(missing) or 'none'}")
            records = [experiments.read_record(setup.job_dir(j)) for j in jobs]
        else:
            records = experiments.run(setup, jobs, sets, args.jobs)
        text, numbers = experiments.report(args.command, setup, records, sets)
        out = setup.runs / args.command
        atomic.write_text(out.with_suffix(".md"), text)
        atomic.write_text(out.with_suffix(".json"), json.dumps(numbers, indent=1) + "\n")
        print("\n" + text + f"\nwritten to {out.with_suffix('.md')} and .json")
        if args.command in FIGURES:
            picture = figures.learning_curve(experiments.curves(records), experiments.PANELS,
                                             experiments.STYLES)
            figure = figure or paths.root() / "docs" / FIGURES[args.command]
            atomic.write_bytes(figure, figures.figure_png(picture))
            print(f"learning curve: {figure}")
    except (experiments.ExperimentError, training.TrainingError) as error:
        print(f"experiments: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("experiments: interrupted; the same command continues where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
