"""Growth standards and dating: centiles, z-scores, gestational age and weight from measurements.

Three published sets of equations, each used for what it was built for:

- **Size at a known age**: the INTERGROWTH-21st fetal growth standards (Papageorghiou et al.,
  Lancet 2014; 384:869-79, the Fetal Growth Longitudinal Study). For HC, BPD, OFD, AC and FL a
  mean ``mu(GA)`` and standard deviation ``sigma(GA)`` in mm, GA in exact weeks (14-40);
  ``z = (x - mu) / sigma``, centile ``100 Phi(z)``. Their protocol measured HC as an ellipse
  on the outer border of the skull and BPD and OFD **outer-to-outer** (the calipers on the
  outer border of the skull on both sides), so their BPD is :data:`BPD_OO`.
- **Age from size** (an *estimate*, stated as such):

  - HC alone and HC with FL: INTERGROWTH-21st dating equations (Papageorghiou et al., Ultrasound
    Obstet Gynecol 2016; 48:719-26), GA in days, HC and FL in mm::

        GA = exp(0.05970 (ln HC)^2 + 0.000000006409 HC^3 + 3.3258)
        GA = exp(0.03243 (ln HC)^2 + 0.001644 FL ln HC + 3.813)

    built on scans at 14 to 26 weeks (later the uncertainty grows: the note says so);
  - FL, AC and BPD alone: Hadlock et al. (Radiology 1984; 152:497-501), GA in weeks,
    measurements in cm: FL ``10.35 + 2.460 FL + 0.170 FL^2``, AC ``8.14 + 0.753 AC +
    0.0036 AC^2``, BPD ``9.54 + 1.482 BPD + 0.1676 BPD^2``; Hadlock's BPD is
    **outer-to-inner** (:data:`BPD_OI`, leading edge to leading edge).

- **Weight**: Hadlock et al. (Am J Obstet Gynecol 1985; 151:333-7), through
  :func:`fetal_biometry.measure.biometry.hadlock_efw`: with AC and FL, and HC when measured (the
  formula of HC, AC and FL), else BPD outer-to-inner when measured. Its centile at a stated age
  is on the INTERGROWTH-21st standard for Hadlock's estimated fetal weight (Stirnemann,
  Salomon and Papageorghiou, Ultrasound Obstet Gynecol 2020; 56:946-8), built on Hadlock's HC,
  AC and FL formula, 18-41 weeks: a skewed (Box-Cox) distribution of ``Y = ln EFW``,
  ``z = ((Y / mu)^lambda - 1) / (sigma lambda)`` with, ``t = GA / 10``::

      lambda = 9.43643 + 9.41579 t^-2 - 83.54220 ln(t) t^-2
      mu     = -2.42272 + 1.86478 GA^0.5 - 1.93299e-5 GA^3
      sigma  = 0.0193557 + 0.0310716 t^-2 - 0.0657587 ln(t) t^-2

  The weight of the other formulas gets no centile (the standard was not built on them).

A centile is only given at a gestational age the user states (from dates or an early scan):
one at an age estimated from the same measurements would say nothing. :func:`panel` turns a
plain dict of measurements in mm (``{"AC": 280.0, "HC": 300.0, ...}``) into the panel a report,
``infer``'s JSON or a DICOM SR states.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
from statistics import NormalDist
from typing import Callable

from fetal_biometry.measure.biometry import hadlock_efw

HC, BPD_OO, BPD_OI, OFD, AC, FL = "HC", "BPD_OO", "BPD_OI", "OFD", "AC", "FL"
#: The measurement keys :func:`panel` reads, in mm, and what each is.
MEASUREMENTS = {
    HC: "head circumference (ellipse at the outer border of the skull)",
    BPD_OO: "biparietal diameter, outer-to-outer",
    BPD_OI: "biparietal diameter, outer-to-inner",
    OFD: "occipito-frontal diameter, outer-to-outer",
    AC: "abdominal circumference",
    FL: "femur length (ossified diaphysis, end to end)",
}
GA_RANGE_WEEKS = (14.0, 40.0)  # where the INTERGROWTH-21st fetal growth standards are defined
EFW_RANGE_WEEKS = (18.0, 41.0)  # where the INTERGROWTH-21st standard for Hadlock's EFW is defined
EFW_CHARTED_FORMULA = "Hadlock 1985 AC, FL, HC"  # the formula that standard was built on
CHART_CENTILES = (3, 10, 50, 90, 97)  # the lines an obstetric report's centile chart draws

_ln = math.log
_NORMAL = NormalDist()


@dataclasses.dataclass(frozen=True)
class Standard:
    """One INTERGROWTH-21st fetal growth standard: mean and SD (mm) as functions of GA (weeks)."""

    measurement: str
    mean: Callable[[float], float]
    sd: Callable[[float], float]


# Papageorghiou et al. 2014, the fractional polynomials of the published standards; GA in exact
# weeks, ln the natural logarithm. The standards' BPD is outer-to-outer.
STANDARDS = {
    HC: Standard(HC, lambda g: -28.2849 + 1.69267 * g ** 2 - 0.397485 * g ** 2 * _ln(g),
                 lambda g: (1.98735 + 0.0136772 * g ** 3 - 0.00726264 * g ** 3 * _ln(g)
                            + 0.000976253 * g ** 3 * _ln(g) ** 2)),
    BPD_OO: Standard(BPD_OO, lambda g: 5.60878 + 0.158369 * g ** 2 - 0.00256379 * g ** 3,
                     lambda g: math.exp(0.101242 + 0.00150557 * g ** 3
                                        - 0.000771535 * g ** 3 * _ln(g)
                                        + 0.0000999638 * g ** 3 * _ln(g) ** 2)),
    OFD: Standard(OFD, lambda g: -12.4097 + 0.626342 * g ** 2 - 0.148075 * g ** 2 * _ln(g),
                  lambda g: math.exp(-0.880034 + 0.0631165 * g ** 2 - 0.0317136 * g ** 2 * _ln(g)
                                     + 0.00408302 * g ** 2 * _ln(g) ** 2)),
    AC: Standard(AC, lambda g: -81.3243 + 11.6772 * g - 0.000561865 * g ** 3,
                 lambda g: (-4.36302 + 0.121445 * g ** 2 - 0.0130256 * g ** 3
                            + 0.00282143 * g ** 3 * _ln(g))),
    FL: Standard(FL, lambda g: -39.9616 + 4.32298 * g - 0.0380156 * g ** 2,
                 lambda g: math.exp(0.605843 - 42.0014 * g ** -2 + 0.00000917972 * g ** 3)),
}


def _check_ga(ga_weeks: float) -> float:
    ga_weeks = float(ga_weeks)
    lo, hi = GA_RANGE_WEEKS
    if not lo <= ga_weeks <= hi:
        raise ValueError(f"gestational age {ga_weeks:g} weeks is outside the INTERGROWTH-21st fetal "
                         f"growth standards ({lo:g} to {hi:g} weeks)")
    return ga_weeks


def _standard(measurement: str) -> Standard:
    if measurement not in STANDARDS:
        raise ValueError(f"no INTERGROWTH-21st standard for {measurement!r}; "
                         f"choose one of {sorted(STANDARDS)}")
    return STANDARDS[measurement]


def mean_sd(measurement: str, ga_weeks: float) -> tuple[float, float]:
    """Mean and standard deviation (mm) of ``measurement`` at ``ga_weeks`` (14-40)."""
    standard, ga_weeks = _standard(measurement), _check_ga(ga_weeks)
    return standard.mean(ga_weeks), standard.sd(ga_weeks)


def zscore(measurement: str, value_mm: float, ga_weeks: float) -> float:
    """z-score of a measurement (mm) at a known gestational age (weeks)."""
    mu, sigma = mean_sd(measurement, ga_weeks)
    return (float(value_mm) - mu) / sigma


def centile(measurement: str, value_mm: float, ga_weeks: float) -> float:
    """Centile (0-100) of a measurement (mm) at a known gestational age (weeks)."""
    return 100 * _NORMAL.cdf(zscore(measurement, value_mm, ga_weeks))


def value_at_centile(measurement: str, centile_: float, ga_weeks: float) -> float:
    """The measurement (mm) on the ``centile_`` line (0 < centile_ < 100) at ``ga_weeks``."""
    if not 0 < centile_ < 100:
        raise ValueError(f"a centile is between 0 and 100, got {centile_}")
    mu, sigma = mean_sd(measurement, ga_weeks)
    return mu + _NORMAL.inv_cdf(centile_ / 100) * sigma


def _efw_lms(ga_weeks: float) -> tuple[float, float, float]:
    """Box-Cox power, median of ln EFW and coefficient of variation at ``ga_weeks``
    (Stirnemann et al. 2020, Table S1)."""
    lo, hi = EFW_RANGE_WEEKS
    if not lo <= ga_weeks <= hi:
        raise ValueError(f"gestational age {ga_weeks:g} weeks is outside the INTERGROWTH-21st "
                         f"standard for Hadlock's estimated fetal weight ({lo:g} to {hi:g} weeks)")
    t = ga_weeks / 10
    return (9.43643 + 9.41579 * t ** -2 - 83.54220 * _ln(t) * t ** -2,
            -2.42272 + 1.86478 * ga_weeks ** 0.5 - 1.93299e-5 * ga_weeks ** 3,
            0.0193557 + 0.0310716 * t ** -2 - 0.0657587 * _ln(t) * t ** -2)


def efw_zscore(grams: float, ga_weeks: float) -> float:
    """z-score of a Hadlock (HC, AC, FL) estimated fetal weight at a known age (18-41 weeks)."""
    lam, mu, sigma = _efw_lms(float(ga_weeks))
    return ((_ln(_positive("EFW", grams)) / mu) ** lam - 1) / (sigma * lam)


def efw_at_centile(centile_: float, ga_weeks: float) -> float:
    """The estimated fetal weight (g) on the ``centile_`` line at ``ga_weeks`` (18-41)."""
    if not 0 < centile_ < 100:
        raise ValueError(f"a centile is between 0 and 100, got {centile_}")
    lam, mu, sigma = _efw_lms(float(ga_weeks))
    return math.exp(mu * (_NORMAL.inv_cdf(centile_ / 100) * sigma * lam + 1) ** (1 / lam))


# --------------------------------------------------------------------------- dating

@dataclasses.dataclass(frozen=True)
class AgeEstimate:
    """A gestational age estimated from size: weeks, the formula used, its source and any note."""

    weeks: float
    formula: str
    source: str
    note: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


IG_DATING = "Papageorghiou et al., Ultrasound Obstet Gynecol 2016;48:719-26 (INTERGROWTH-21st)"
HADLOCK_DATING = "Hadlock et al., Radiology 1984;152:497-501"
IG_DATING_WEEKS = (14.0, 26.0)  # the scans the INTERGROWTH-21st dating equations were built on
HADLOCK_WEEKS = (14.0, 40.0)


def _note(weeks: float, built_on: tuple[float, float]) -> str | None:
    lo, hi = built_on
    if lo <= weeks <= hi:
        return None
    return (f"outside the {lo:g}-{hi:g} weeks the formula was built on: the estimate is "
            f"less certain")


def _positive(name: str, value_mm: float) -> float:
    value_mm = float(value_mm)
    if not value_mm > 0 or math.isinf(value_mm):
        raise ValueError(f"{name} must be a positive number of mm, got {value_mm}")
    return value_mm


def ga_from_hc(hc_mm: float, fl_mm: float | None = None) -> AgeEstimate:
    """Gestational age from HC, or from HC and FL together (INTERGROWTH-21st dating, 2016)."""
    hc = _positive(HC, hc_mm)
    if fl_mm is None:
        days = math.exp(0.05970 * _ln(hc) ** 2 + 0.000000006409 * hc ** 3 + 3.3258)
        formula = "INTERGROWTH-21st HC"
    else:
        fl = _positive(FL, fl_mm)
        days = math.exp(0.03243 * _ln(hc) ** 2 + 0.001644 * fl * _ln(hc) + 3.813)
        formula = "INTERGROWTH-21st HC and FL"
    return AgeEstimate(days / 7, formula, IG_DATING, _note(days / 7, IG_DATING_WEEKS))


# Hadlock 1984: GA (weeks) = c0 + c1 x + c2 x^2 with x in cm.
_HADLOCK_AGE = {FL: (10.35, 2.460, 0.170), AC: (8.14, 0.753, 0.0036),
                BPD_OI: (9.54, 1.482, 0.1676)}


def ga_hadlock(measurement: str, value_mm: float) -> AgeEstimate:
    """Gestational age from FL, AC or BPD (outer-to-inner) alone, Hadlock et al. 1984."""
    if measurement not in _HADLOCK_AGE:
        raise ValueError(f"no Hadlock dating formula for {measurement!r}; "
                         f"choose one of {sorted(_HADLOCK_AGE)}")
    x = _positive(measurement, value_mm) / 10
    c0, c1, c2 = _HADLOCK_AGE[measurement]
    weeks = c0 + c1 * x + c2 * x * x
    return AgeEstimate(weeks, f"Hadlock {measurement}", HADLOCK_DATING, _note(weeks, HADLOCK_WEEKS))


def ga_from_dates(exam: datetime.date, lmp: datetime.date) -> float:
    """Gestational age (weeks) on the exam date from the first day of the last menstrual period."""
    days = (exam - lmp).days
    if days <= 0:
        raise ValueError(f"the last menstrual period ({lmp}) must be before the exam ({exam})")
    return days / 7


def ga_argument(ga_weeks: float | None = None, lmp: str | None = None,
                exam_date: str | None = None) -> float | None:
    """The gestational age a user stated: ``--ga WEEKS``, or ``--lmp`` with ``--exam-date``
    (ISO dates, YYYY-MM-DD); None when none was; ValueError saying what is wrong."""
    if ga_weeks is not None and (lmp or exam_date):
        raise ValueError("give --ga WEEKS or --lmp with --exam-date, not both")
    if ga_weeks is not None:
        return _check_ga(ga_weeks)
    if lmp is None and exam_date is None:
        return None
    if lmp is None or exam_date is None:
        raise ValueError("--lmp and --exam-date go together")
    try:
        weeks = ga_from_dates(datetime.date.fromisoformat(exam_date), datetime.date.fromisoformat(lmp))
    except ValueError as error:
        raise ValueError(f"--lmp {lmp} / --exam-date {exam_date}: {error}") from None
    return _check_ga(weeks)


# --------------------------------------------------------------------------- the panel

def _read(measurements: dict) -> dict[str, float]:
    unknown = sorted(set(measurements) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown measurements {unknown}; expected some of {list(MEASUREMENTS)} "
                         f"(BPD must say its convention: {BPD_OO} or {BPD_OI})")
    return {k: _positive(k, v) for k, v in measurements.items() if v is not None}


def estimated_weight(measurements: dict, ga_weeks: float | None = None) -> dict | None:
    """Hadlock (1985) estimated fetal weight from what was measured, or None without AC and FL.

    With HC, the formula of HC, AC and FL (the one the INTERGROWTH-21st EFW standard was built
    on); else with BPD outer-to-inner (Hadlock's BPD convention) the formula of BPD, AC and FL;
    else AC and FL. Returns ``{"grams", "formula", "from", "centile", "z", "not_charted"}``:
    the centile and z-score only at a stated age ``ga_weeks`` (18-41) and for the HC, AC, FL
    formula; otherwise ``not_charted`` says why.
    """
    m = _read(measurements)
    if AC not in m or FL not in m:
        return None
    head = next((k for k in (HC, BPD_OI) if k in m), None)
    used = [AC, FL] + ([head] if head else [])
    grams = hadlock_efw(m[AC], m[FL], hc_mm=m[HC] if head == HC else None,
                        bpd_mm=m[BPD_OI] if head == BPD_OI else None)
    formula = "Hadlock 1985 " + ", ".join({BPD_OI: "BPD"}.get(k, k) for k in used)
    weight = {"grams": grams, "formula": formula, "from": used, "centile": None, "z": None,
              "not_charted": None}
    lo, hi = EFW_RANGE_WEEKS
    if formula != EFW_CHARTED_FORMULA:
        weight["not_charted"] = ("the INTERGROWTH-21st EFW standard was built on Hadlock's HC, AC "
                                 "and FL formula: measure HC too")
    elif ga_weeks is None:
        weight["not_charted"] = "no gestational age given (--ga WEEKS, or the exam date and LMP)"
    elif not lo <= ga_weeks <= hi:
        weight["not_charted"] = f"the EFW standard covers {lo:g} to {hi:g} weeks"
    else:
        z = efw_zscore(grams, ga_weeks)
        weight.update(z=z, centile=100 * _NORMAL.cdf(z))
    return weight


def age_estimate(measurements: dict) -> AgeEstimate | None:
    """The exam's gestational age estimate: INTERGROWTH-21st HC and FL, else HC, else Hadlock
    FL, AC or BPD (outer-to-inner), in that order of precision; None without any of them."""
    m = _read(measurements)
    if HC in m:
        return ga_from_hc(m[HC], m.get(FL))
    for key in (FL, AC, BPD_OI):
        if key in m:
            return ga_hadlock(key, m[key])
    return None


def exam_measurements(scans: list[dict]) -> tuple[dict[str, float], dict[str, int]]:
    """One exam's measurements from its scans' (each ``{key: mm}``, None skipped): the mean
    of each key over the scans that measured it, and how many did."""
    values: dict[str, list[float]] = {}
    for measured in scans:
        for key, value in _read(measured).items():
            values.setdefault(key, []).append(value)
    return ({k: sum(v) / len(v) for k, v in values.items()}, {k: len(v) for k, v in values.items()})


def panel(measurements: dict, ga_weeks: float | None = None,
          counts: dict[str, int] | None = None) -> dict:
    """The biometry panel of one exam, a plain dict (JSON-ready).

    Parameters
    ----------
    measurements : dict
        Measurement key (:data:`MEASUREMENTS`) -> mm; None values are skipped.
    ga_weeks : float, optional
        The gestational age known from dates or an early scan. Centiles and z-scores are only
        given with it: never at an age estimated from the same measurements.
    counts : dict, optional
        How many scans each measurement is the mean of (:func:`exam_measurements`).

    Returns
    -------
    dict
        ``{"ga_weeks": given or None, "ga_estimate": AgeEstimate dict or None,
        "efw": estimated_weight(..., ga_weeks), "measurements": {key: {"mm", "ga_estimate",
        "centile", "z", "standard", "not_charted"[, "scans"]}}, "cephalic_index": BPD_OO / OFD
        or None}``.
    """
    m = _read(measurements)
    if ga_weeks is not None:
        ga_weeks = _check_ga(ga_weeks)
    out = {}
    for key, value in m.items():
        entry: dict = {"mm": value, "ga_estimate": None, "centile": None, "z": None,
                       "standard": None, "not_charted": None}
        if counts is not None:
            entry["scans"] = counts.get(key, 1)
        if key == HC:
            entry["ga_estimate"] = ga_from_hc(value).to_dict()
        elif key in _HADLOCK_AGE:
            entry["ga_estimate"] = ga_hadlock(key, value).to_dict()
        if key not in STANDARDS:
            entry["not_charted"] = (f"the INTERGROWTH-21st standards chart BPD outer-to-outer "
                                    f"({BPD_OO}), not {key}")
        elif ga_weeks is None:
            entry["not_charted"] = "no gestational age given (--ga WEEKS, or the exam date and LMP)"
        else:
            entry.update(centile=centile(key, value, ga_weeks), z=zscore(key, value, ga_weeks),
                         standard="INTERGROWTH-21st fetal growth (Papageorghiou et al. 2014)")
        out[key] = entry
    estimate = age_estimate(m)
    ci = m[BPD_OO] / m[OFD] if BPD_OO in m and OFD in m else None
    return {"ga_weeks": ga_weeks, "ga_estimate": estimate.to_dict() if estimate else None,
            "efw": estimated_weight(m, ga_weeks), "measurements": out, "cephalic_index": ci}
