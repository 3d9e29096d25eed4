"""Held-out evaluation: class maps and biometry against a dataset's ground truth.

For each model folder (:mod:`fetal_biometry.model`) every held-out case is classified densely
at the model's spacing (:mod:`fetal_biometry.inference`), measured on its own grid
(:mod:`fetal_biometry.biometry`) and compared with its ground truth: pixel and per-class
accuracy and the confusion matrix inside the fan, AC error in mm and percent, and plane
acceptance. :func:`table` prints the ablation as markdown.
"""
from __future__ import annotations

import json
import os
import pathlib

import cv2
import numpy as np

from fetal_biometry import atomic, biometry, dataset, inference, model as model_folder
from fetal_biometry.labels import CLASSIFIER_CLASSES, OUTSIDE, classifier_labels


def case_result(case: dataset.Case, probs: np.ndarray, predicted: np.ndarray) -> dict:
    """Compare one case's predicted class map and measurement with its ground truth."""
    truth = classifier_labels(case.labels)
    inside = truth != OUTSIDE
    classes = len(CLASSIFIER_CLASSES)
    confusion = np.bincount(truth[inside].astype(int) * classes + predicted[inside],
                            minlength=classes * classes).reshape(classes, classes)
    measured = biometry.measure(predicted, case.spacing_mm)
    result = {"case": case.name, "confusion": confusion.tolist(),
              "ac_true_mm": case.biometry.ac_mm, "ac_mm": measured.ac_mm,
              "accepted_true": case.biometry.plane_acceptable, "accepted": measured.accepted,
              "reasons": measured.reasons}
    if measured.ac_mm is not None:
        result["ac_error_mm"] = measured.ac_mm - case.biometry.ac_mm
        result["ac_error_percent"] = 100 * result["ac_error_mm"] / case.biometry.ac_mm
    return result, measured


def evaluate(model: model_folder.Model, data: str | os.PathLike, out: str | os.PathLike | None = None,
             progress=None, overlays: int = 4, at_model_spacing: bool = True) -> dict:
    """Evaluate ``model`` on every case of the dataset at ``data``; summary and per-case results.

    Each case is classified at the model's spacing and measured on its own grid. With ``out``,
    the first ``overlays`` cases get a PNG (class overlay beside the measured ellipse) and the
    results are written to ``OUT/<model.name>.json``. ``at_model_spacing=False`` classifies
    on each scan's own pixels instead (what the nets did before target spacings; a baseline).
    """
    opened = dataset.open(data)
    if opened.structures() != {"abdomen"}:
        raise dataset.DatasetError(f"{data}: holds head planes; the evaluation measures the AC "
                                   f"of abdominal planes")
    classifier = inference.DenseClassifier.from_model(model)
    if not at_model_spacing:
        classifier.spacing_mm = None
    results = []
    cases = opened.iter_cases()
    iterator = progress(cases, desc=model.name) if progress else cases
    for index, case in enumerate(iterator):
        name = case.name
        probs, predicted = classifier.classify_scan(case.image, case.geometry, case.spacing_mm)
        result, measured = case_result(case, probs, predicted)
        results.append(result)
        if out is not None and index < overlays:
            picture = np.hstack([inference.overlay(case.image, predicted),
                                 biometry.draw(case.image, measured)])
            png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))[1].tobytes()
            atomic.write_bytes(pathlib.Path(out) / f"{model.name}_{name}.png", png)
    summary = summarize(results)
    if out is not None:
        atomic.write_text(pathlib.Path(out) / f"{model.name}.json",
                          json.dumps({"summary": summary, "cases": results}, indent=1) + "\n")
    return summary


def summarize(results: list[dict]) -> dict:
    """Pixel / per-class accuracy, AC error and plane acceptance over all cases."""
    confusion = np.sum([r["confusion"] for r in results], axis=0)
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    errors = np.array([abs(r["ac_error_percent"]) for r in results if "ac_error_percent" in r])
    errors_mm = np.array([abs(r["ac_error_mm"]) for r in results if "ac_error_mm" in r])
    agree = [r["accepted"] == r["accepted_true"] for r in results]
    return {
        "cases": len(results),
        "pixel_accuracy": float(np.trace(confusion) / confusion.sum()),
        "per_class_accuracy": {c: float(a) for c, a in zip(CLASSIFIER_CLASSES, per_class)},
        "confusion": confusion.tolist(),
        "ac_measured": int(len(errors)),
        "ac_median_error_percent": float(np.median(errors)) if len(errors) else None,
        "ac_median_error_mm": float(np.median(errors_mm)) if len(errors_mm) else None,
        "ac_p90_error_percent": float(np.percentile(errors, 90)) if len(errors) else None,
        "plane_acceptance_accuracy": float(np.mean(agree)) if agree else None,
    }


def table(summaries: dict[str, dict]) -> str:
    """The ablation as a markdown table: one row per model (beam encoding)."""
    header = ("| model | pixel acc. | fluid | stomach | vein | shadow | background | "
              "AC measured | median AC error | 90th pct. AC error | plane acceptance |")
    lines = [header, "|" + " --- |" * 11]
    for name, s in summaries.items():
        acc = s["per_class_accuracy"]
        ac = ("-" if s["ac_median_error_percent"] is None else
              f"{s['ac_median_error_percent']:.1f} % ({s['ac_median_error_mm']:.1f} mm)")
        p90 = "-" if s.get("ac_p90_error_percent") is None else f"{s['ac_p90_error_percent']:.1f} %"
        lines.append(
            f"| {name} | {s['pixel_accuracy']:.3f} | {acc['amniotic_fluid']:.3f} | "
            f"{acc['stomach_bubble']:.3f} | {acc['umbilical_vein']:.3f} | {acc['shadow']:.3f} | "
            f"{acc['background']:.3f} | {s['ac_measured']}/{s['cases']} | {ac} | {p90} | "
            f"{s['plane_acceptance_accuracy']:.3f} |")
    return "\n".join(lines)


def write_report(summaries: dict[str, dict], out: str | os.PathLike) -> str:
    """Write ``OUT/table.md`` and ``OUT/summary.json``; returns the table."""
    text = table(summaries)
    atomic.write_text(pathlib.Path(out, "table.md"), text + "\n")
    atomic.write_text(pathlib.Path(out, "summary.json"), json.dumps(summaries, indent=1) + "\n")
    return text
