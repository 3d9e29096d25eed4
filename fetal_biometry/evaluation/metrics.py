"""Every metric of the project, as plain functions over measured values and their truth.

Scans (:mod:`fetal_biometry.evaluation.scans`): Bland-Altman :func:`agreement`, the AC errors
(:func:`ac_errors`, "off" above :data:`OFF_PERCENT`), the plane verdicts against the true ones
(:func:`plane_outcomes`) and the reasons for rejecting (:func:`rejection_reasons`).

Sweeps (:mod:`fetal_biometry.evaluation.sweeps`), the metrics of ACOUSLIC-AI (MICCAI 2024):

- **WFSS**, the weighted frame selection score: 1 for an optimal frame; 1 for a suboptimal one
  where the sweep has no optimal frame, 0.6 where it has; 1 for answering -1 where the sweep
  has neither; 0 otherwise (an irrelevant frame, or -1 where a usable frame existed).
- **NAE** = ``|AC_true - AC| / max(AC_true, AC)``: 1 when only one of them exists, 0 when
  neither does.
- **Dice** of the predicted abdomen mask (the filled ellipse) and the annotated one on the
  chosen frame (empty on irrelevant frames; 1 when both are empty).
- **score** = 0.5 (1 - NAE) + 0.25 Dice + 0.25 WFSS.
"""
from __future__ import annotations

import collections

import numpy as np

from fetal_biometry.measure import thresholds

OFF_PERCENT = thresholds.MAX_ERROR_PERCENT  # an AC off by more is a wrong number, not an imprecise one
PLANE_OUTCOMES = ("true accept", "false accept", "true reject", "false reject")


def agreement(measured: np.ndarray, true: np.ndarray) -> dict | None:
    """Bland-Altman agreement of measured with true values: bias and 95 % limits (mean +- 1.96 SD
    of the differences), in the unit of the values and as a percentage of each pair's mean.
    None with fewer than two pairs."""
    measured, true = np.asarray(measured, float), np.asarray(true, float)
    if len(measured) < 2:
        return None
    result = {"n": int(len(measured))}
    for key, difference in (("mm", measured - true),
                            ("percent", 200 * (measured - true) / (measured + true))):
        bias, sd = float(difference.mean()), float(difference.std(ddof=1))
        result[f"bias_{key}"] = bias
        result[f"loa_{key}"] = [bias - 1.96 * sd, bias + 1.96 * sd]
    return result


def hc_errors(measured: np.ndarray, true: np.ndarray) -> dict | None:
    """Head circumference errors as HC18 reports them (van den Heuvel et al. 2018): the mean
    difference (DF) and mean absolute difference (ADF) in mm, with the median, 90th percentile
    and largest absolute error in percent of the true HC; None without pairs."""
    measured, true = np.asarray(measured, float), np.asarray(true, float)
    if len(measured) == 0:
        return None
    difference = measured - true
    percent = np.abs(100 * difference / true)
    return {"n": int(len(measured)), "mean_difference_mm": float(difference.mean()),
            "mean_absolute_difference_mm": float(np.abs(difference).mean()),
            "median_absolute_percent": float(np.median(percent)),
            "p90_absolute_percent": float(np.percentile(percent, 90)),
            "max_absolute_percent": float(percent.max())}


def plane_outcomes(results: list[dict]) -> dict[str, int]:
    """Counts of true/false accept/reject against the true verdicts."""
    counts = dict.fromkeys(PLANE_OUTCOMES, 0)
    for r in results:
        right = "true" if r["accepted"] == r["accepted_true"] else "false"
        counts[f"{right} {'accept' if r['accepted'] else 'reject'}"] += 1
    return counts


def rejection_reasons(results: list[dict], prefix: str = "") -> dict[str, int]:
    """Why planes were rejected (only the reasons starting with ``prefix``, which is dropped),
    tallied, most frequent first; numbers in brackets dropped (``"AC not measured: abdomen fit
    too small (semi-minor axis 12.1 mm < 15 mm)"`` counts as its part before the bracket)."""
    tally = collections.Counter(reason[len(prefix):].split(" (")[0] for r in results
                                for reason in r["reasons"] if reason.startswith(prefix))
    return dict(tally.most_common())


def ac_errors(results: list[dict]) -> dict:
    """The measured ACs' absolute errors: how many were measured, median (percent and mm),
    90th percentile, maximum, and how many are off by more than :data:`OFF_PERCENT`."""
    errors = np.array([abs(r["ac_error_percent"]) for r in results if "ac_error_percent" in r])
    errors_mm = np.array([abs(r["ac_error_mm"]) for r in results if "ac_error_mm" in r])
    some = len(errors) > 0
    return {
        "ac_measured": int(len(errors)),
        "ac_median_error_percent": float(np.median(errors)) if some else None,
        "ac_median_error_mm": float(np.median(errors_mm)) if some else None,
        "ac_p90_error_percent": float(np.percentile(errors, 90)) if some else None,
        "ac_max_error_percent": float(errors.max()) if some else None,
        "ac_off_count": int(np.count_nonzero(errors > OFF_PERCENT)),
    }


def wfss(chosen: int, planes: list[str]) -> float:
    """ACOUSLIC-AI's weighted frame selection score of ``chosen`` (-1: none) given the
    per-frame truth ``planes`` ("optimal", "suboptimal", "irrelevant")."""
    has_optimal, has_suboptimal = "optimal" in planes, "suboptimal" in planes
    if chosen < 0:
        return 0.0 if has_optimal or has_suboptimal else 1.0
    if planes[chosen] == "optimal":
        return 1.0
    if planes[chosen] == "suboptimal":
        return 0.6 if has_optimal else 1.0
    return 0.0


def nae(true_mm: float | None, measured_mm: float | None) -> float:
    """Normalised absolute AC error ``|t - m| / max(t, m)``; 1 when only one exists, 0 for neither."""
    if true_mm is None and measured_mm is None:
        return 0.0
    if true_mm is None or measured_mm is None:
        return 1.0
    return abs(true_mm - measured_mm) / max(true_mm, measured_mm)


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1 when both are empty."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(predicted, truth).sum() / total)


def combined(nae_value: float, dice_value: float, wfss_value: float) -> float:
    """The ACOUSLIC-style score 0.5 (1 - NAE) + 0.25 Dice + 0.25 WFSS."""
    return 0.5 * (1 - nae_value) + 0.25 * dice_value + 0.25 * wfss_value
