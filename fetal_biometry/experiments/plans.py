"""The experiments' plans (which jobs, evaluated on which sets) and their aggregation: mean +- sd
over seeds, tables, learning curves, the patch size and trust limits chosen on validation
scans, and the report (:func:`report`)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from fetal_biometry.evaluation import scans as evaluation
from fetal_biometry.experiments.jobs import (AUGMENT, ExperimentError, HALVES, Job, PATCH_SIZES,
                                             SCANS, SEEDS, SEGMENTER_SIZE_ENCODING,
                                             SEGMENTER_SPACINGS, SEGMENTER_TIE, SEGMENTER_WEIGHTINGS,
                                             SEGMENTER_WIDTHS, Setup, TIE, UNNAMED_WEIGHTING, appearance,
                                             groups, job_of)
from fetal_biometry.measure import thresholds
from fetal_biometry.nets import catalog, model as model_folder, spec as nets
from fetal_biometry.patches import encoding as patches, scan_encoding, segment_records


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
                   spacing_mm: float = segment_records.SPACING_MM,
                   weighting: str = segment_records.WEIGHTING) -> Plan:
    """The segmenter's three encodings at 100 scans, one job per seed, on the validation,
    held-out and foreign sets (beside the patch classifier's ablation)."""
    return segmenter_curve_plan((100,), seeds, augment, iterations, width, spacing_mm,
                                weighting)[0], SEGMENTER_SETS


def segmenter_curve_plan(scans: Sequence[int] = SCANS, seeds: Sequence[int] = SEEDS,
                         augment: int = AUGMENT, iterations: int = catalog.SEGMENTER_ITERATIONS,
                         width: int = nets.UNET_WIDTH,
                         spacing_mm: float = segment_records.SPACING_MM,
                         weighting: str = segment_records.WEIGHTING) -> Plan:
    """The segmenter's learning curve: each encoding and number of training scans, one job per
    seed (the 100-scan jobs are :func:`segmenter_plan`'s)."""
    return [Job(e, n, s, augment=augment, iterations=iterations, kind=model_folder.SEGMENTER,
                width=width, spacing_mm=spacing_mm, weighting=weighting)
            for n in scans for e in scan_encoding.ENCODINGS for s in seeds], SEGMENTER_SETS


def segmenter_size_plan(widths: Sequence[int] = SEGMENTER_WIDTHS,
                        spacings: Sequence[float] = SEGMENTER_SPACINGS,
                        weightings: Sequence[str] = SEGMENTER_WEIGHTINGS, seeds: Sequence[int] = (0,),
                        augment: int = AUGMENT, iterations: int = catalog.SEGMENTER_ITERATIONS,
                        encoding: str = SEGMENTER_SIZE_ENCODING) -> Plan:
    """One encoding (beam), 100 scans: one job per U-Net width, spacing, class weighting and
    seed, on the validation set; :func:`choose_segmenter` picks by its stated rule. A chosen
    configuration's jobs are :func:`segmenter_plan`'s of that encoding."""
    return [Job(encoding, 100, s, augment=augment, iterations=iterations, kind=model_folder.SEGMENTER,
                width=w, spacing_mm=sp, weighting=wt)
            for w in widths for sp in spacings for wt in weightings for s in seeds], ("validation",)


def _config(job: dict) -> tuple[int, float, str]:
    """A segmenter job record's (width, spacing, weighting)."""
    return job["width"], job["spacing_mm"], job.get("weighting", UNNAMED_WEIGHTING)


def choose_segmenter(records: Sequence[dict]) -> tuple[tuple[int, float, str], str]:
    """The segmenter's width, spacing and class weighting by the rule written down before the
    run (docs/segmenter.md): the highest mean per-class Dice over the eight classes on the
    validation set (averaged over seeds); configurations within :data:`SEGMENTER_TIE` of it are
    tied, and among them the cheaper wins (fewer multiply-adds per scan: the smaller width, then
    the coarser spacing), then the smaller median AC error on the validation set."""
    by_config: dict[tuple[int, float, str], list[dict]] = {}
    for record in records:
        by_config.setdefault(_config(record["job"]), []).append(record["evaluations"]["validation"])

    def dice(config):
        return float(np.mean([np.mean(list(s["per_class_dice"].values())) for s in by_config[config]]))

    def ac_error(config):
        errors = [s["ac_median_error_percent"] for s in by_config[config]]
        return np.inf if None in errors else float(np.mean(errors))

    best = max(map(dice, by_config))
    tied = [c for c in by_config if dice(c) >= best - SEGMENTER_TIE]
    chosen = min(tied, key=lambda c: (c[0], -c[1], ac_error(c)))
    rule = (f"highest mean per-class Dice on the validation set (best {best:.3f}); configurations "
            f"within {SEGMENTER_TIE} tied ({', '.join(f'width {w}, {sp:g} mm, {wt}' for w, sp, wt in tied)}), "
            "the cheaper wins, then the smaller median AC error")
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
    "ac_acceptable": ("AC on acceptable planes", lambda s: s.get("ac_measured_acceptable")),
    "ac_median": ("median AC error", lambda s: s["ac_median_error_percent"]),
    "ac_p90": ("90th pct. AC error", lambda s: s.get("ac_p90_error_percent")),
    "ac_max": ("max AC error", lambda s: s.get("ac_max_error_percent")),
    "ac_off": ("> 10 %", lambda s: s.get("ac_off_count")),
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
    digits = 1 if metric in PERCENT or metric in ("ac_measured", "ac_off") else 3
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


def limits_method(records: Sequence[dict]) -> thresholds.Method:
    """How the records' nets measure the AC: the segmented abdomen for segmenters, the fluid
    boundary for patch classifiers (ExperimentError for a mixture: their limits differ)."""
    kinds = {job_of(r["job"]).kind for r in records}
    if len(kinds) != 1:
        raise ExperimentError(f"trust limits are chosen for one kind of model at a time, not {sorted(kinds)}")
    return thresholds.SEGMENTED if kinds == {model_folder.SEGMENTER} else thresholds.FLUID


def choose_limits(setup: Setup, records: Sequence[dict], sets: Sequence[str],
                  ) -> tuple[thresholds.Choice, dict[str, list[dict]]]:
    """Trust limits and plane thresholds (:func:`fetal_biometry.measure.thresholds.choose`) from the
    records' evaluations on ``sets`` (validation sets only), measured again from their class maps
    under the loosest limits of their kind's method (:func:`limits_method`); with the per-case
    results by set."""
    method = limits_method(records)
    try:
        groups = {name: [r for record in records for r in evaluation.stored_results(
            setup.evaluation_record(job_of(record["job"]), name), limits=method.loosest)]
            for name in sets}
    except (ValueError, OSError) as err:  # e.g. --finished jobs evaluated before maps were kept
        raise ExperimentError(f"{err} (run the command without --finished)") from err
    return thresholds.choose([r for results in groups.values() for r in results], method), groups


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
        "segmenter-size": (_config, lambda k: f"width {k[0]}, {k[1]:g} mm, {k[2]} weights",
                           "U-Net width, spacing, class weights"),
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
        (width, spacing, weighting), rule = choose_segmenter(records)
        numbers["chosen"] = {"width": width, "spacing_mm": spacing, "weighting": weighting, "rule": rule}
        parts.append(f"Chosen: **width {width}, {spacing:g} mm per pixel, {weighting} class weights** ({rule}).")
    if plan == "thresholds" or (plan == "segmenter" and "validation" in sets):
        chosen_on = [s for s in sets if s.startswith("validation")]  # never the reported sets
        choice, groups = choose_limits(setup, records, chosen_on)
        method = limits_method(records)
        numbers["chosen"] = dataclasses.asdict(choice)
        parts.append(f"Trust limits and plane thresholds chosen on {', '.join(chosen_on)} "
                     f"({len(records)} nets; copy into {method.home}):\n\n"
                     f"```\n{thresholds.constants(choice, method)}\n```\n\n"
                     + thresholds.report(choice, groups, method))
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
            digits = 1 if metric in PERCENT or metric in ("ac_measured", "ac_off") else 3
            cells.append("-" if a is None or b is None else
                         f"{a - b:+.{digits}f}" + (" %" if metric in PERCENT else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _variant_label(key: tuple[str, int]) -> str:
    variant, augment = key
    data = {"all": "all randomisations", "none": "none (the first round's narrow ranges)"}.get(
        variant, f"without {variant[3:]}")
    return f"{data}, " + (f"augmented x{augment}" if augment else "no augmentation")
