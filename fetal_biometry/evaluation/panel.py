"""Held-out evaluation of the biometry panel, per structure: plane type, head, femur and abdomen.

A segmenter of the class table "panel" (:data:`fetal_biometry.labels.SEGMENTER_TABLES`) classifies
every case of a dataset of mixed planes (``tools/simulate.py --plane mixed``, or heads imported
from HC18's layout); each predicted map's plane type and measurements come from
:func:`fetal_biometry.measure.plane.measure_plane` and are compared with the case's truth:

- **plane type** (abdomen, head, femur, none) against the structure the case shows;
- **measurements** on the planes the truth calls acceptable: HC, OFD, BPD outer-to-outer and
  outer-to-inner (error in mm and percent), cephalic index (absolute error), FL (mm), AC
  (percent); a value counts as *measured* when the plane was accepted and the value given (what
  a report would state), and the share measured is over the acceptable planes of that structure;
- **the measurement alone** (``verdict_aside``): the same errors over every acceptable plane
  the value was found on, whatever the plane verdict said: how well the net's outline measures,
  apart from whether it recognises the plane's landmarks;
- **unfit measured as fit**: planes the truth calls unfit (transcerebellar or oblique heads,
  foreshortened femurs, abdomens at the wrong level) that were accepted.

The goals (issue #26) are :data:`GOALS`; :func:`table` writes the per-structure tables with each
goal met or its distance. Class maps are kept (``<model>_maps.npz``) as :mod:`.scans` does, so
:func:`remeasure` measures again under other rules without Caffe.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from fetal_biometry import atomic, figures
from fetal_biometry.evaluation import scans as abdominal
from fetal_biometry.inference import dense as inference
from fetal_biometry.io import dataset, scans
from fetal_biometry.measure import growth, plane
from fetal_biometry.nets import model as model_folder

#: Measurements compared, by structure (:data:`fetal_biometry.measure.growth.MEASUREMENTS` keys).
KEYS = {"head": ("HC", "OFD", "BPD_OO", "BPD_OI"), "femur": ("FL",), "abdomen": ("AC",)}
#: The issue's goals on held-out simulated planes.
GOALS = {"median_percent": 2.0, "p90_percent": 4.0, "measured_share": 0.90, "ci_within": 0.03,
         "ci_share": 0.90, "fl_median_mm": 1.5, "fl_p90_mm": 3.0, "plane_type": 0.95,
         "unfit_accepted": 0.05}
TOOL = "evaluate"  # the same output marker as the abdominal evaluation's folders


def truth_of(case: dataset.Case) -> dict[str, float]:
    """The true measurements of a case (mm) by :data:`KEYS` key: a head's or femur's from its
    record, an abdomen's AC, an imported head's HC (its circumference)."""
    bio = case.biometry
    if bio.structure == "abdomen":
        return {"AC": bio.ac_mm}
    found = dict(bio.measurements or {})
    if bio.structure == "head" and "HC" not in found and bio.circumference_mm:
        found["HC"] = bio.circumference_mm
    return {k: float(v) for k, v in found.items() if k in KEYS[bio.structure]}


def case_result(case: dataset.Case, predicted: np.ndarray) -> dict:
    """One case's plane type, verdict and measurements against its truth (JSON-ready)."""
    found = plane.measure_plane(predicted, case.spacing_mm, case.geometry)
    truth = truth_of(case)
    result = {"case": case.name, "structure": case.biometry.structure, "plane_type": found.kind,
              "acceptable_true": case.biometry.plane_acceptable, "reason_true": case.biometry.plane_reason,
              "accepted": found.accepted, "reasons": list(found.reasons),
              "measurements": dict(found.measurements), "truth": truth, "errors": {}}
    for key, true in truth.items():
        if key in found.measurements:
            error = found.measurements[key] - true
            result["errors"][key] = {"mm": error, "percent": 100 * error / true}
    if found.kind == "head" and "BPD_OO" in truth and "OFD" in truth \
            and found.detail.cephalic_index is not None:
        result["ci_error"] = found.detail.cephalic_index - truth["BPD_OO"] / truth["OFD"]
    return result


def _stats(values: list[float]) -> dict:
    v = np.abs(np.asarray(values, float))
    if not len(v):
        return {"n": 0, "median": None, "p90": None, "max": None}
    return {"n": int(len(v)), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "max": float(v.max())}


def centile_points(results: list[dict], opened: dataset.Dataset) -> dict[str, list[tuple[float, float, float]]]:
    """Per measurement key, ``(gestational age, measured, true)`` of the cases measured on an
    accepted plane whose age is known (:func:`fetal_biometry.figures.evaluation_centiles`)."""
    points: dict[str, list] = {}
    for r in results:
        age = opened.records[r["case"]][2].gestational_age_weeks
        if age is None or not r["accepted"]:
            continue
        for key, error in r["errors"].items():
            points.setdefault(key, []).append((age, r["measurements"][key], r["truth"][key]))
    return points


def summarize(results: list[dict]) -> dict:
    """Plane type accuracy and confusion, per-measurement errors on acceptable planes, cephalic
    index, and unfit planes accepted, per structure (see the module doc)."""
    types = plane.PLANE_TYPES
    confusion = {t: {p: 0 for p in types} for t in types}
    for r in results:
        confusion[r["structure"]][r["plane_type"]] += 1
    summary: dict = {"cases": len(results),
                     "plane_type_accuracy": float(np.mean([r["plane_type"] == r["structure"] for r in results]))
                     if results else None,
                     "plane_type_confusion": confusion, "measurements": {}, "unfit": {}}
    for structure, keys in KEYS.items():
        fit = [r for r in results if r["structure"] == structure and r["acceptable_true"]]
        for key in keys:
            truthful = [r for r in fit if key in r["truth"]]
            if not truthful:
                continue
            measured = [r for r in truthful if r["accepted"] and key in r["errors"]]
            found = [r for r in truthful if key in r["errors"]]  # the verdict aside
            summary["measurements"][key] = {
                "acceptable": len(truthful), "measured": len(measured),
                "measured_share": len(measured) / len(truthful),
                "percent": _stats([r["errors"][key]["percent"] for r in measured]),
                "mm": _stats([r["errors"][key]["mm"] for r in measured]),
                "verdict_aside": {"measured": len(found),
                                  "percent": _stats([r["errors"][key]["percent"] for r in found]),
                                  "mm": _stats([r["errors"][key]["mm"] for r in found])}}
        unfit = [r for r in results if r["structure"] == structure and not r["acceptable_true"]]
        if unfit:
            accepted = [r for r in unfit if r["accepted"]]
            summary["unfit"][structure] = {"planes": len(unfit), "accepted": len(accepted),
                                           "share": len(accepted) / len(unfit)}
    heads = [r for r in results if r["structure"] == "head" and r["acceptable_true"] and "OFD" in r["truth"]]
    if heads:
        within = [r for r in heads if r["accepted"] and abs(r.get("ci_error", np.inf)) <= GOALS["ci_within"]]
        summary["cephalic_index"] = {"acceptable": len(heads), "within": len(within),
                                     "within_share": len(within) / len(heads),
                                     "error": _stats([r["ci_error"] for r in heads
                                                      if r["accepted"] and "ci_error" in r])}
    planes = sum(u["planes"] for u in summary["unfit"].values())
    summary["unfit_accepted_share"] = (sum(u["accepted"] for u in summary["unfit"].values()) / planes
                                       if planes else None)
    return summary


def case_results(classifier, opened: dataset.Dataset, progress=None,
                 name: str = "model") -> tuple[list[dict], dict[str, np.ndarray]]:
    """Classify and measure every case of an opened dataset: the per-case results and each
    predicted map (dataset label values), by case name."""
    results, maps = [], {}
    cases = opened.iter_cases()
    for case in progress(cases, desc=name) if progress else cases:
        _, predicted = classifier.classify_scan(case.image, case.geometry, case.spacing_mm)
        results.append(case_result(case, predicted))
        maps[case.name] = predicted
    return results, maps


def evaluate(model: model_folder.Model, data: str | os.PathLike, out: str | os.PathLike | None = None,
             progress=None, backend: str = "caffe") -> dict:
    """Evaluate the panel segmenter ``model`` on every case of the dataset at ``data``; returns
    the summary. With ``out``: ``OUT/<model.name>.json`` (summary, per-case results, provenance,
    dataset), ``OUT/<model.name>_maps.npz`` (every predicted map) and, when the cases' ages are
    known, ``OUT/centiles_<model.name>.png``: each measurement on its INTERGROWTH-21st chart."""
    if model.kind != model_folder.SEGMENTER or not {"skull", "femur"} <= set(model.classes):
        raise ValueError(f"{model.root}: not a segmenter of the head and femur (classes "
                         f"{', '.join(model.classes)}); train one on records made with --classes panel")
    opened = dataset.open(data)
    results, maps = case_results(inference.engine(model, backend=backend), opened, progress, model.name)
    summary = summarize(results)
    if out is not None:
        out = pathlib.Path(out)
        record = {"summary": summary, "model": abdominal.provenance(model),
                  "dataset": {"path": str(data), "cases": len(opened.cases), "generator": opened.generator},
                  "cases": results}
        atomic.write_bytes(abdominal.maps_file(out / f"{model.name}.json"), _npz(maps))
        atomic.write_text(out / f"{model.name}.json", json.dumps(record, indent=1) + "\n")
        points = centile_points(results, opened)
        if any(k in growth.STANDARDS for k in points):
            atomic.write_bytes(out / f"centiles_{model.name}.png",
                               figures.figure_png(figures.evaluation_centiles(points)))
    return summary


def remeasure(record: str | os.PathLike) -> dict:
    """Measure the evaluation record ``OUT/<model>.json`` anew from its stored maps under the
    rules in force now (no net is run), rewrite it and return its summary."""
    saved = json.loads(pathlib.Path(record).read_text())
    opened = dataset.open(saved["dataset"]["path"])
    with np.load(abdominal.maps_file(record)) as stored:
        results = [case_result(case, stored[case.name]) for case in opened.iter_cases()]
    saved.update(summary=summarize(results), cases=results)
    atomic.write_text(record, json.dumps(saved, indent=1) + "\n")
    return saved["summary"]


def _npz(maps: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **maps)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- tables

def _verdict(value: float | None, goal: float, lower_is_better: bool = True) -> str:
    if value is None:
        return "-"
    met = value <= goal if lower_is_better else value >= goal
    return "met" if met else f"short by {abs(value - goal):.3g}"


def table(summary: dict) -> str:
    """The per-structure tables of one summary (markdown), each goal met or its distance."""
    lines = ["| measurement | acceptable planes | measured | median error | 90th pct. | max | goal |",
             "|" + " --- |" * 7]
    for key, m in summary["measurements"].items():
        mm, pct = m["mm"], m["percent"]
        if key == "FL":
            cells = [f"{mm[s]:.2f} mm" if mm[s] is not None else "-" for s in ("median", "p90", "max")]
            goal = (f"median {_verdict(mm['median'], GOALS['fl_median_mm'])}, "
                    f"p90 {_verdict(mm['p90'], GOALS['fl_p90_mm'])}")
        else:
            cells = [f"{pct[s]:.2f} % ({mm[s]:.2f} mm)" if pct[s] is not None else "-"
                     for s in ("median", "p90", "max")]
            goal = (f"median {_verdict(pct['median'], GOALS['median_percent'])}, "
                    f"p90 {_verdict(pct['p90'], GOALS['p90_percent'])}")
            if key in ("HC", "OFD", "BPD_OO", "BPD_OI"):
                goal += f", measured {_verdict(m['measured_share'], GOALS['measured_share'], False)}"
        lines.append(f"| {key} | {m['acceptable']} | {m['measured']} ({m['measured_share']:.0%}) | "
                     + " | ".join(cells) + f" | {goal} |")
    ci = summary.get("cephalic_index")
    if ci:
        err = ci["error"]
        lines.append(f"| CI | {ci['acceptable']} | within 0.03: {ci['within']} ({ci['within_share']:.0%}) | "
                     f"{'-' if err['median'] is None else format(err['median'], '.3f')} | "
                     f"{'-' if err['p90'] is None else format(err['p90'], '.3f')} | "
                     f"{'-' if err['max'] is None else format(err['max'], '.3f')} | "
                     f"within 0.03 on >= 90 %: {_verdict(ci['within_share'], GOALS['ci_share'], False)} |")
    unfit = summary["unfit"]
    share = summary["unfit_accepted_share"]
    accuracy = summary["plane_type_accuracy"]
    lines += ["", f"Plane type right on {accuracy:.3f} of {summary['cases']} planes "
                  f"(goal 0.95: {_verdict(accuracy, GOALS['plane_type'], False)}); unfit planes measured as fit: "
              + ", ".join(f"{s} {u['accepted']}/{u['planes']}" for s, u in unfit.items())
              + ("" if share is None else f" ({share:.1%}; goal <= 5 %: {_verdict(share, GOALS['unfit_accepted'])})")]
    return "\n".join(lines)


def hc18_table(summary: dict) -> str:
    """HC error as HC18 reports it (mm and percent) for heads imported from HC18's layout."""
    hc = summary["measurements"].get("HC")
    if hc is None:
        return "no head with an HC in the dataset"
    mm, pct = hc["mm"], hc["percent"]
    if mm["n"] == 0:
        return f"HC measured on 0 of {hc['acceptable']} heads"
    return (f"HC measured on {hc['measured']} of {hc['acceptable']} heads; absolute error median "
            f"{mm['median']:.2f} mm ({pct['median']:.2f} %), 90th pct. {mm['p90']:.2f} mm "
            f"({pct['p90']:.2f} %), max {mm['max']:.2f} mm ({pct['max']:.2f} %)")
