"""Held-out evaluation: class maps and biometry against a dataset's ground truth.

For each model folder (:mod:`fetal_biometry.nets.model`) every held-out case is classified densely
at the model's spacing (:mod:`fetal_biometry.inference.dense`), measured on its own grid
(:mod:`fetal_biometry.measure.biometry`) and compared with its ground truth: pixel and per-class
accuracy and the confusion matrix inside the fan, AC error in mm and percent with Bland-Altman
agreement, and plane acceptance with the rejection reasons. An AC the class map does not
support is reported as "AC not measured: <reason>" (:data:`fetal_biometry.measure.biometry.TRUST_RULES`),
never as a number: the summary counts the measured ACs, tallies why the others were not, and
gives the median, 90th-percentile and largest error of those measured and how many are off by
more than :data:`~fetal_biometry.evaluation.metrics.OFF_PERCENT`. Each case records its fit's support numbers
(:class:`fetal_biometry.measure.biometry.Support`), which :mod:`fetal_biometry.measure.thresholds` chooses the
trust limits from. An evaluation written to a folder keeps every case's predicted class map
beside its record (``<model>_maps.npz``, a few KB a case) and the limits it was measured under,
so :func:`remeasure` applies other trust limits and plane thresholds without Caffe or the net.
:func:`table` prints the ablation as markdown; :func:`write_report` writes it with the HTML
report of :mod:`fetal_biometry.evaluation.report`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import zipfile

import numpy as np

from fetal_biometry import atomic, figures
from fetal_biometry.inference import dense as inference
from fetal_biometry.evaluation import metrics
from fetal_biometry.io import dataset, scans
from fetal_biometry.labels import (ABDOMEN_REGION, CLASSIFIER_CLASSES, OUTSIDE, SEGMENTER_CLASSES,
                                   abdomen_labels, classifier_labels)
from fetal_biometry.measure import abdomen, biometry
from fetal_biometry.nets import model as model_folder

TYPICAL = 2  # typical cases drawn beside the worst ones


def provenance(model: model_folder.Model) -> dict:
    """Where a model came from, for the report: its folder and files, and its ``model.json``."""
    return {"folder": str(pathlib.Path(model.root).resolve()), **model.record,
            "deploy": str(pathlib.Path(model.deploy).resolve()),
            "weights": str(pathlib.Path(model.weights).resolve())}


def in_force(kind: str = model_folder.PATCH_CLASSIFIER) -> dict:
    """The limits and thresholds a model of ``kind`` is measured under now (an evaluation records
    them; one measured under others is measured again from its class maps)."""
    return abdomen.in_force() if kind == model_folder.SEGMENTER else biometry.in_force()


def measure(predicted: np.ndarray, spacing_mm: float, kind: str = model_folder.PATCH_CLASSIFIER,
            limits: dict[str, float] | None = None,
            plane: dict[str, float] | None = None) -> biometry.Measurement:
    """The measurement of a predicted class map by the method of its model's ``kind``: the fluid
    boundary (:mod:`fetal_biometry.biometry`) for a patch classifier, the segmented abdomen with
    the fluid boundary as second opinion (:mod:`fetal_biometry.abdomen`) for a segmenter.
    ``limits`` replace the trust limits of the kind's method (the fluid method's by support
    field, the segmented abdomen's by constant name, :mod:`fetal_biometry.measure.thresholds`)."""
    if kind == model_folder.SEGMENTER:
        return abdomen.measure(predicted, spacing_mm, limits=limits, plane=plane)
    return biometry.measure(predicted, spacing_mm, limits=limits, plane=plane)


def case_result(case: dataset.Case, predicted: np.ndarray, limits: dict[str, float] | None = None,
                plane: dict[str, float] | None = None,
                kind: str = model_folder.PATCH_CLASSIFIER) -> tuple[dict, biometry.Measurement]:
    """Compare one case's predicted class map and measurement with its ground truth.

    ``limits`` and ``plane`` replace the trust rules' limits and the plane thresholds (see
    :func:`fetal_biometry.measure.biometry.measure`). ``kind``: the model's kind; a segmenter's map is
    compared with all eight dataset classes, and its abdomen region (:data:`ABDOMEN_REGION`)
    with the truth's (``abdomen_overlap``: pixels in both, in the truth, in the prediction).
    The record has the fit's ``support`` numbers (None when nothing fitted) and the umbilical
    vein's ``vein_wall_gap_mm`` beside the AC, its error and the plane verdict.
    """
    segmenter = kind == model_folder.SEGMENTER
    # The confusion is over the abdomen's eight classes: heart, lung and kidney count as abdomen.
    truth = abdomen_labels(case.labels) if segmenter else classifier_labels(case.labels)
    inside = truth != OUTSIDE
    classes = len(SEGMENTER_CLASSES if segmenter else CLASSIFIER_CLASSES)
    found = abdomen_labels(predicted) if segmenter else predicted
    confusion = np.bincount(truth[inside].astype(int) * classes + found[inside],
                            minlength=classes * classes).reshape(classes, classes)
    measured = measure(predicted, case.spacing_mm, kind, limits, plane)
    support = measured.support
    result = {"case": case.name, "confusion": confusion.tolist(),
              "ac_true_mm": case.biometry.ac_mm, "ac_mm": measured.ac_mm,
              "accepted_true": case.biometry.plane_acceptable, "accepted": measured.accepted,
              "reasons": list(measured.reasons),
              "support": None if support is None else dataclasses.asdict(support),
              "vein_wall_gap_mm": None if measured.vein is None else measured.vein.wall_gap_mm}
    if segmenter:
        true_region = np.isin(case.labels, ABDOMEN_REGION)
        found_region = np.isin(predicted, ABDOMEN_REGION)
        result["abdomen_overlap"] = [int(np.count_nonzero(true_region & found_region)),
                                     int(np.count_nonzero(true_region)), int(np.count_nonzero(found_region))]
        second = measured.second
        result["fluid_method_ac_mm"] = None if second is None else second.ac_mm
    if measured.ac_mm is not None:
        result["ac_error_mm"] = measured.ac_mm - case.biometry.ac_mm
        result["ac_error_percent"] = 100 * result["ac_error_mm"] / case.biometry.ac_mm
    return result, measured


TOOL = "evaluate"  # the output marker of evaluation folders (fetal_biometry.atomic.mark)
RESERVED = {"summary", "table", "report"}  # the report's own files: no model may be named so


def evaluate(model: model_folder.Model, data: str | os.PathLike, out: str | os.PathLike | None = None,
             progress=None, overlays: int = 4, at_model_spacing: bool = True,
             backend: str = "caffe") -> dict:
    """Evaluate ``model`` on every case of the dataset at ``data``; returns the summary.

    Each case is classified at the model's spacing and measured on its own grid. With ``out``,
    ``OUT/<model.name>.json`` gets the summary, the per-case results, the model's provenance
    and the dataset, and overlays are drawn for the ``overlays`` cases with the largest AC
    errors, up to ``overlays`` more with a wrong plane verdict and :data:`TYPICAL` typical ones
    (``OUT/<model.name>_<case>.png``: truth, classes, measurement), and every case's predicted
    class map goes to ``OUT/<model.name>_maps.npz`` (:func:`remeasure`). ``at_model_spacing=False``
    classifies on each scan's own pixels instead (what the nets did before target spacings; a
    baseline).
    """
    if out is not None and model.name in RESERVED:
        raise ValueError(f"{model.root}: a model named {model.name!r} would overwrite the report's "
                         f"{model.name} file in {out}; rename the model folder")
    opened = dataset.open(data)
    results, maps = case_results(model, opened, progress, at_model_spacing, backend=backend)
    summary = summarize(results)
    if out is not None:
        out = pathlib.Path(out)
        chosen = pick_cases(results, overlays, TYPICAL if overlays else 0)
        for pick in chosen:
            predicted = scans.imread(maps[pick["case"]])
            pick["file"] = f"{model.name}_{pick['case']}.png"
            picture = case_picture(opened.read(pick["case"]), predicted, model.kind)
            atomic.write_bytes(out / pick["file"], scans.encode_png(picture))
        record = {"summary": summary, "model": provenance(model),
                  "dataset": {"path": str(data), "cases": len(opened.cases),
                              "generator": opened.generator},
                  "measured_under": in_force(model.kind), "overlays": chosen, "cases": results}
        atomic.write_bytes(maps_file(out / f"{model.name}.json"), _npz(maps))
        atomic.write_text(out / f"{model.name}.json", json.dumps(record, indent=1) + "\n")
    return summary


def maps_file(record: str | os.PathLike) -> pathlib.Path:
    """Where the class maps of the evaluation record ``OUT/<model>.json`` are kept."""
    record = pathlib.Path(record)
    return record.with_name(f"{record.stem}_maps.npz")


def _npz(maps: dict[str, bytes]) -> bytes:
    """The PNG-encoded maps as one compressed NumPy archive of uint8 arrays, by case name."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: scans.imread(png) for name, png in maps.items()})
    return buffer.getvalue()


def stored_results(record: str | os.PathLike, limits: dict[str, float] | None = None,
                   plane: dict[str, float] | None = None) -> list[dict]:
    """The per-case results of the evaluation record ``OUT/<model>.json`` measured anew from its
    stored class maps under ``limits`` and ``plane`` (None: :func:`biometry.in_force`), against
    the ground truth of the dataset it names; no net is run.

    Raises ValueError when the maps are missing or the dataset is no longer the one evaluated.
    """
    return _stored_results(pathlib.Path(record), json.loads(pathlib.Path(record).read_text()),
                           limits, plane)


def _stored_results(record: pathlib.Path, saved: dict, limits: dict[str, float] | None,
                    plane: dict[str, float] | None) -> list[dict]:
    opened = dataset.open(saved["dataset"]["path"])
    if opened.generator != saved["dataset"]["generator"] or \
            list(opened.cases) != [r["case"] for r in saved["cases"]]:
        raise ValueError(f"{record}: {saved['dataset']['path']} is no longer the dataset this "
                         f"evaluation classified; evaluate the model again")
    try:
        with np.load(maps_file(record)) as stored:
            maps = {name: stored[name] for name in opened.cases}
    except FileNotFoundError as err:
        raise ValueError(f"{record}: no stored class maps ({maps_file(record).name}): "
                         f"evaluate the model again to keep them") from err
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{maps_file(record)}: unreadable or incomplete class maps ({err}): "
                         f"evaluate the model again") from err
    kind = saved.get("model", {}).get("kind", model_folder.PATCH_CLASSIFIER)
    return [case_result(case, maps[case.name], limits, plane, kind)[0] for case in opened.iter_cases()]


def remeasure(record: str | os.PathLike) -> dict:
    """Measure the evaluation record ``OUT/<model>.json`` again from its stored class maps under
    the limits in force now (after :mod:`fetal_biometry.measure.thresholds` chose new ones), rewrite it
    and return its new summary."""
    saved = json.loads(pathlib.Path(record).read_text())
    results = _stored_results(pathlib.Path(record), saved, None, None)
    kind = saved.get("model", {}).get("kind", model_folder.PATCH_CLASSIFIER)
    saved.update(summary=summarize(results), measured_under=in_force(kind), cases=results)
    atomic.write_text(record, json.dumps(saved, indent=1) + "\n")
    return saved["summary"]


def case_results(model: model_folder.Model, opened: dataset.Dataset, progress=None,
                 at_model_spacing: bool = True, limits: dict[str, float] | None = None,
                 backend: str = "caffe") -> tuple[list[dict], dict[str, bytes]]:
    """Classify and measure every case of an opened dataset: the per-case results
    (:func:`case_result`) and each predicted label map as PNG bytes, by case name."""
    if opened.structures() != {"abdomen"}:
        raise dataset.DatasetError(f"{opened.root}: holds head planes; the evaluation measures "
                                   f"the AC of abdominal planes")
    classifier = inference.engine(model, at_model_spacing, backend)
    results, maps = [], {}
    cases = opened.iter_cases()
    for case in progress(cases, desc=model.name) if progress else cases:
        _, predicted = classifier.classify_scan(case.image, case.geometry, case.spacing_mm)
        results.append(case_result(case, predicted, limits, kind=model.kind)[0])
        maps[case.name] = scans.encode_png(predicted)  # ~50x smaller as PNG: cheap to keep for pictures
    return results, maps


def case_picture(case: dataset.Case, predicted: np.ndarray,
                 kind: str = model_folder.PATCH_CLASSIFIER) -> np.ndarray:
    """Truth (labels and true ellipse), the classified map and the measurement, side by side."""
    segmenter = kind == model_folder.SEGMENTER
    truth = figures.overlay(case.image, case.labels if segmenter else classifier_labels(case.labels))
    figures.draw_ellipse(truth, case.biometry.ellipse)
    panels = [figures.caption(truth, "truth"),
              figures.caption(figures.class_overlay(case.image, predicted), "classified"),
              figures.caption(figures.draw_measurement(
                  case.image, measure(predicted, case.spacing_mm, kind)), "measured")]
    gap = np.full((case.image.shape[0], 4, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def pick_cases(results: list[dict], worst: int, typical: int) -> list[dict]:
    """The cases worth looking at: ``[{"case", "why"}]``.

    The ``worst`` largest AC errors (unmeasured first), up to ``worst`` more with a wrong plane
    verdict, and ``typical`` cases with a right verdict whose AC error is nearest the median.
    """
    def error(r):
        return abs(r["ac_error_percent"]) if "ac_error_percent" in r else np.inf

    chosen: dict[str, str] = {}
    for r in sorted(results, key=error, reverse=True)[:worst]:
        chosen[r["case"]] = "largest AC error" if np.isfinite(error(r)) else "AC not measured"
    wrong = [r for r in results if r["accepted"] != r["accepted_true"] and r["case"] not in chosen]
    for r in wrong[:worst]:
        chosen[r["case"]] = "wrong plane verdict"
    good = [r for r in results if r["case"] not in chosen and np.isfinite(error(r))
            and r["accepted"] == r["accepted_true"]]
    if good:
        median = np.median([error(r) for r in good])
        for r in sorted(good, key=lambda r: abs(error(r) - median))[:typical]:
            chosen[r["case"]] = "typical"
    return [{"case": name, "why": why} for name, why in chosen.items()]


def summarize(results: list[dict]) -> dict:
    """Pixel / per-class accuracy, AC error and plane acceptance over all cases."""
    confusion = np.sum([r["confusion"] for r in results], axis=0)
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    names = SEGMENTER_CLASSES if len(confusion) == len(SEGMENTER_CLASSES) else CLASSIFIER_CLASSES
    dice = 2 * np.diag(confusion) / np.maximum(confusion.sum(axis=0) + confusion.sum(axis=1), 1)
    overlap = np.sum([r["abdomen_overlap"] for r in results if "abdomen_overlap" in r], axis=0)
    agree = [r["accepted"] == r["accepted_true"] for r in results]
    acceptable = [r["ac_mm"] is not None for r in results if r["accepted_true"]]
    pairs = [(r["ac_mm"], r["ac_true_mm"]) for r in results if r["ac_mm"] is not None]
    return {
        "cases": len(results),
        "pixel_accuracy": float(np.trace(confusion) / confusion.sum()),
        "per_class_accuracy": {c: float(a) for c, a in zip(names, per_class)},
        "per_class_dice": {c: float(d) for c, d in zip(names, dice)},
        "abdomen_dice": float(2 * overlap[0] / max(1, overlap[1] + overlap[2])) if np.size(overlap) == 3 else None,
        "confusion": confusion.tolist(),
        **metrics.ac_errors(results),
        # The coverage goal: the share of the truly acceptable planes given an AC.
        "ac_measured_acceptable": float(np.mean(acceptable)) if acceptable else None,
        "ac_not_measured": metrics.rejection_reasons(results, f"{biometry.NOT_MEASURED}: "),
        "plane_acceptance_accuracy": float(np.mean(agree)) if agree else None,
        "ac_agreement": metrics.agreement(*np.array(pairs).reshape(-1, 2).T),
        "plane_outcomes": metrics.plane_outcomes(results),
        "rejection_reasons": metrics.rejection_reasons(results),
    }


def table(summaries: dict[str, dict]) -> str:
    """The ablation as a markdown table: one row per model (beam encoding).

    AC errors are absolute, over the measured ACs; "> 10 %" counts those off by more than
    :data:`~fetal_biometry.evaluation.metrics.OFF_PERCENT`."""
    header = ("| model | pixel acc. | fluid | stomach | vein | shadow | background | abdomen Dice | "
              "AC measured | median AC error | 90th pct. | max | > 10 % | plane acceptance |")
    lines = [header, "|" + " --- |" * 14]

    def percent(value):
        return "-" if value is None else f"{value:.1f} %"

    for name, s in summaries.items():
        acc = s["per_class_accuracy"]
        ac = ("-" if s["ac_median_error_percent"] is None else
              f"{s['ac_median_error_percent']:.1f} % ({s['ac_median_error_mm']:.1f} mm)")
        lines.append(
            f"| {name} | {s['pixel_accuracy']:.3f} | {acc['amniotic_fluid']:.3f} | "
            f"{acc['stomach_bubble']:.3f} | {acc['umbilical_vein']:.3f} | {acc['shadow']:.3f} | "
            f"{acc['background']:.3f} | "
            f"{'-' if s.get('abdomen_dice') is None else format(s['abdomen_dice'], '.3f')} | "
            f"{s['ac_measured']}/{s['cases']} | {ac} | "
            f"{percent(s.get('ac_p90_error_percent'))} | {percent(s.get('ac_max_error_percent'))} | "
            f"{s.get('ac_off_count', '-')} | {s['plane_acceptance_accuracy']:.3f} |")
    return "\n".join(lines)


def write_report(summaries: dict[str, dict], out: str | os.PathLike) -> str:
    """Write ``OUT/table.md``, ``OUT/summary.json`` and ``OUT/report.html`` (with its figures,
    from the ``OUT/<encoding>.json`` that :func:`evaluate` wrote); returns the table."""
    from fetal_biometry.evaluation import report

    text = table(summaries)
    # The slow report (figures, then the page) first, the two quick files right after it: a
    # run killed while drawing leaves the three files of the earlier report, not a mix.
    report.write(out, list(summaries))
    atomic.write_text(pathlib.Path(out, "table.md"), text + "\n")
    atomic.write_text(pathlib.Path(out, "summary.json"), json.dumps(summaries, indent=1) + "\n")
    return text
