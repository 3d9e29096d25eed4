"""Choosing the AC trust limits and the plane rules' thresholds on a validation split, for
either way of measuring the AC (:class:`Method`): the fluid boundary of a patch classifier's
map (:data:`FLUID`, :mod:`fetal_biometry.measure.biometry`) or the segmented abdomen
(:data:`SEGMENTED`, :mod:`fetal_biometry.measure.abdomen`, whose disagreement margin with the
fluid method is one of its trust rules). One rule serves both.

:func:`fetal_biometry.measure.biometry.measure` reports "AC not measured: <reason>" when the fit's
support (:class:`fetal_biometry.measure.biometry.Support`) fails a trust rule, and rejects planes too
elongated or with the umbilical vein at the skin line. Where each limit sits is a trade: a
tighter one removes wrong numbers and costs right ones. This module makes the trade on
validation data (never the held-out set) from per-case results of
:func:`fetal_biometry.evaluation.scans.case_result` measured under :data:`LOOSEST` limits.

**Trust limits** (:func:`choose_trust`). Goal: no measured AC off by more than
:data:`MAX_ERROR_PERCENT` and the 90th percentile of the errors within
:data:`MAX_P90_PERCENT`, measuring as many cases as possible. Greedily: start from the loosest
limits; while the measured cases miss the goal, remove the worst measured case by the one rule
that removes it with the fewest cases (ties: the rule listed first in
:data:`~fetal_biometry.measure.biometry.TRUST_RULES`), tightening that rule to the worst case's value
(every case at least as extreme goes too). A step may not cost more than
:data:`MAX_COST_PER_ERROR` good ACs (within :data:`MAX_P90_PERCENT`) per bad one it removes:
where the worst case can only be removed dearer than that, no support number tells it from good
cases, and the chooser stops and reports the goal missed (a limit fitted to one case would throw
away good measurements everywhere else). Each tightened limit is then set half-way between the
last value it rejects and the nearest value it keeps: the loosest limit that rejects those
cases with a margin on both sides. A rule never needed keeps its :data:`LOOSEST` limit.

**Plane thresholds** (:func:`choose_plane`), on the cases measured under the chosen limits: each
of ``MIN_PLANE_AXIS_RATIO`` and ``VEIN_SKIN_MM`` is set where the plane verdicts agree best with
the truth (the other rules of :func:`fetal_biometry.measure.biometry.assess_plane` as they are, this one
alone switched on), in the middle of the first range of values that agrees that well. A
threshold only moves beyond the range that agrees as well as its loosest value when that
corrects at least :data:`MIN_PLANE_GAIN` more verdicts: one case is no evidence.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fetal_biometry.measure import abdomen, biometry

MAX_ERROR_PERCENT = 10.0  # no measured AC off by more (the goal)
MAX_P90_PERCENT = 5.0  # the 90th percentile of the measured ACs' errors
MAX_COST_PER_ERROR = 3  # good ACs a tightening may give up per bad one it removes
MIN_PLANE_GAIN = 2  # verdicts a plane threshold must correct beyond its loosest value's

#: The loosest trust limits ever allowed, what the validation runs are measured under: a quarter
#: of the wall cannot place the other three quarters, nor can one stretch of a quarter; inliers
#: lie within ``INLIER_MM`` by construction; an ellipse half fluid or half outside the fan is not
#: an abdomen seen.
LOOSEST = {"coverage": 0.25, "largest_gap": 0.75, "residual_mm": biometry.INLIER_MM,
           "fluid_share": 0.5, "outside_share": 0.5}

#: The segmented abdomen's loosest limits (by constant name): as above, and a region half empty
#: or half again its ellipse, or an outline seen over less than a fifth, is no abdomen; ACs of
#: the two methods half apart (relative to their mean) are no second opinion.
SEGMENTER_LOOSEST = {"MIN_COVERAGE": 0.25, "MAX_RESIDUAL_MM": biometry.INLIER_MM, "MIN_VISIBLE": 0.2,
                     "MIN_CONVEXITY": 0.7, "MIN_AREA_RATIO": 0.5, "MAX_AREA_RATIO": 1.5,
                     "MAX_OUTSIDE_SHARE": 0.5, "DISAGREEMENT": 0.5}


@dataclasses.dataclass(frozen=True)
class Method:
    """A way of measuring the AC as the chooser sees it: its trust ``rules``, the ``loosest``
    limits validation runs are measured under, whether a limits dict names a rule by its
    constant (``by_constant``: the segmented abdomen has two rules on one support field) or by
    its support field, and the module holding the constants (``home``)."""

    rules: tuple[biometry.Rule, ...]
    loosest: dict[str, float]
    by_constant: bool
    home: str

    def key(self, rule: biometry.Rule) -> str:
        return rule.constant if self.by_constant else rule.field


FLUID = Method(biometry.TRUST_RULES, LOOSEST, False, "fetal_biometry/measure/biometry.py")
SEGMENTED = Method(abdomen.TRUST_RULES, SEGMENTER_LOOSEST, True, "fetal_biometry/measure/abdomen.py")

PLANE_RULES = {  # threshold name -> (what it reads, its loosest value); a plane whose value is
    # below the threshold is rejected. No fit is more elongated than MIN_AXIS_RATIO; no gap < 0.
    "MIN_PLANE_AXIS_RATIO": ("axis_ratio", biometry.MIN_AXIS_RATIO),
    "VEIN_SKIN_MM": ("vein_wall_gap_mm", 0.0),
}
_PLANE_PREFIXES = ("abdomen too elongated", "umbilical vein reaches the skin line")


@dataclasses.dataclass(frozen=True)
class Choice:
    """The chosen trust ``limits`` (Support field -> value), plane ``thresholds`` (constant name
    -> value) and the ``steps`` taken: (rule field, value rejected, cases removed, their errors)."""

    limits: dict[str, float]
    thresholds: dict[str, float]
    steps: list[tuple[str, float, int, list[float]]]


def _error(result: dict) -> float | None:
    return abs(result["ac_error_percent"]) if "ac_error_percent" in result else None


def goal_met(errors: list[float]) -> bool:
    """No error above :data:`MAX_ERROR_PERCENT` and the 90th percentile within the goal."""
    return not errors or (max(errors) <= MAX_ERROR_PERCENT
                          and float(np.percentile(errors, 90)) <= MAX_P90_PERCENT)


def _value(result: dict, field: str) -> float:
    return result["support"][field]


def _beyond(value: float, bound: float, lower: bool) -> bool:
    """Whether ``value`` is at least as extreme as ``bound`` for a rule (lower: small is bad)."""
    return value <= bound if lower else value >= bound


def choose_trust(results: list[dict], method: Method = FLUID) -> tuple[dict[str, float], list]:
    """Trust limits from per-case results measured under ``method.loosest`` (see the module
    docstring for the rule); returns the limits and the steps taken."""
    rules = method.rules
    kept = [r for r in results if _error(r) is not None]
    rejected: dict[str, float] = {}
    steps = []
    while kept and not goal_met([_error(r) for r in kept]):
        worst = max(kept, key=_error)
        options = []
        for order, rule in enumerate(rules):
            bound = _value(worst, rule.field)
            gone = [r for r in kept if _beyond(_value(r, rule.field), bound, rule.lower)]
            options.append((len(gone), order, rule, bound, gone))
        count, _, rule, bound, gone = min(options, key=lambda o: o[:2])
        bad = sum(_error(r) > MAX_P90_PERCENT for r in gone)
        if count - bad > MAX_COST_PER_ERROR * max(bad, 1):
            break  # the worst case looks like good ones: the goal is missed, see the docstring
        rejected[method.key(rule)] = bound
        steps.append((method.key(rule), bound, count, sorted((_error(r) for r in gone), reverse=True)))
        kept = [r for r in kept if r not in gone]
    limits = dict(method.loosest)
    for rule in rules:
        if method.key(rule) in rejected:
            bound = rejected[method.key(rule)]
            inside = [_value(r, rule.field) for r in kept
                      if not _beyond(_value(r, rule.field), bound, rule.lower)]
            nearest = (min(inside) if rule.lower else max(inside)) if inside else bound
            limits[method.key(rule)] = (bound + nearest) / 2
    return limits, steps


def _trusted(result: dict, limits: dict[str, float], method: Method) -> bool:
    support = result["support"]
    return (support is not None and _error(result) is not None
            and not any(rule.fails(support[rule.field], limits[method.key(rule)])
                        for rule in method.rules))


def _plane_value(result: dict, reads: str) -> float | None:
    return result["support"][reads] if reads == "axis_ratio" else result[reads]


def choose_plane(results: list[dict], limits: dict[str, float], method: Method = FLUID) -> dict[str, float]:
    """``MIN_PLANE_AXIS_RATIO`` and ``VEIN_SKIN_MM`` where the plane verdicts of the cases
    trusted under ``limits`` agree best with the truth (see the module docstring)."""
    cases = [r for r in results if _trusted(r, limits, method)]
    # Rejected for another reason than the two rules chosen here (and not for the AC).
    other = np.array([any(not reason.startswith(_PLANE_PREFIXES) for reason in r["reasons"])
                      for r in cases], bool)
    truth = np.array([r["accepted_true"] for r in cases], bool)
    chosen = {}
    for name, (reads, loosest) in PLANE_RULES.items():
        values = np.array([np.nan if (v := _plane_value(r, reads)) is None else v for r in cases])
        seen = np.unique(values[np.isfinite(values)])
        # The outcome changes just above each seen value: both ends of every interval.
        candidates = np.unique(np.concatenate([[loosest], seen, seen + 1e-6]))
        candidates = candidates[candidates >= loosest]

        def agreement(threshold: float) -> float:
            with np.errstate(invalid="ignore"):
                fails = values < threshold  # NaN (no vein seen) never fails this rule
            return float(np.mean((~other & ~fails) == truth)) if len(cases) else 0.0

        right = np.array([agreement(t) for t in candidates]) * len(cases)
        target = right.max() if right.max() >= right[0] + MIN_PLANE_GAIN else right[0]
        first = int(np.argmax(np.abs(right - target) < 1e-9))
        last = first
        while last + 1 < len(right) and abs(right[last + 1] - target) < 1e-9:
            last += 1
        chosen[name] = float((candidates[first] + candidates[last]) / 2)
    return chosen


def choose(results: list[dict], method: Method = FLUID) -> Choice:
    """Trust limits, then plane thresholds, from per-case validation results (under
    ``method.loosest``)."""
    limits, steps = choose_trust(results, method)
    return Choice(limits, choose_plane(results, limits, method), steps)


def costs(results: list[dict], limits: dict[str, float], method: Method = FLUID) -> list[dict]:
    """What each trust rule at its chosen limit costs and buys: per rule, the cases it alone
    would stop measuring, how many of them were off by more than :data:`MAX_ERROR_PERCENT` and
    by more than :data:`MAX_P90_PERCENT`, and their errors (largest first)."""
    measured = [r for r in results if _error(r) is not None]
    rows = []
    for rule in method.rules:
        key = method.key(rule)
        gone = sorted((_error(r) for r in measured if rule.fails(_value(r, rule.field), limits[key])),
                      reverse=True)
        rows.append({"rule": key, "limit": limits[key],
                     "loosest": method.loosest[key], "not_measured": len(gone),
                     "off_10": sum(e > MAX_ERROR_PERCENT for e in gone),
                     "off_5": sum(e > MAX_P90_PERCENT for e in gone), "errors": gone})
    return rows


def outcome(results: list[dict], limits: dict[str, float], method: Method = FLUID) -> dict:
    """The measured ACs under ``limits``: measured n of N, median, 90th percentile and largest
    absolute error (percent), and how many are off by more than :data:`MAX_ERROR_PERCENT`."""
    errors = [_error(r) for r in results if _trusted(r, limits, method)]
    some = bool(errors)
    return {"measured": len(errors), "cases": len(results),
            "median": float(np.median(errors)) if some else None,
            "p90": float(np.percentile(errors, 90)) if some else None,
            "max": float(max(errors)) if some else None,
            "off_10": sum(e > MAX_ERROR_PERCENT for e in errors)}


def constants(choice: Choice, method: Method = FLUID) -> str:
    """The chosen values as the lines of the method's module (``method.home``) that hold them."""
    lines = [f"{rule.constant} = {choice.limits[method.key(rule)]:.3f}" for rule in method.rules]
    return "\n".join(lines + [f"{name} = {value:.3f}" for name, value in choice.thresholds.items()])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def report(choice: Choice, groups: dict[str, list[dict]], method: Method = FLUID) -> str:
    """Markdown: the chosen values, what each limit costs (cases it alone stops measuring, of
    them how many were off), and the measured ACs under the loosest and the chosen limits, per
    group of per-case results and pooled."""
    pooled = [r for results in groups.values() for r in results]
    lines = ["| trust rule | chosen | loosest | ACs it stops measuring | of them off > 10 % | > 5 % |",
             "|" + " --- |" * 6]
    for row in costs(pooled, choice.limits, method):
        lines.append(f"| {row['rule']} | {row['limit']:.3f} | {row['loosest']:g} | "
                     f"{row['not_measured']} | {row['off_10']} | {row['off_5']} |")
    lines += ["", "| plane threshold | chosen |", "| --- | --- |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in choice.thresholds.items()]
    lines += ["", "| cases | measured (loosest) | median | 90th pct. | max | > 10 % "
              "| measured (chosen) | median | 90th pct. | max | > 10 % |", "|" + " --- |" * 11]
    for name, results in {**groups, "all": pooled}.items():
        cells = []
        for limits in (method.loosest, choice.limits):
            o = outcome(results, limits, method)
            cells += [f"{o['measured']}/{o['cases']}", _percent(o["median"]), _percent(o["p90"]),
                      _percent(o["max"]), str(o["off_10"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
