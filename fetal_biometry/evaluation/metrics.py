"""Metrics of ACOUSLIC-AI (MICCAI 2024), per sweep (MICCAI 2024), per sweep (:func:`sweep_metrics`):

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

import numpy as np


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
