"""Choosing the trust limits and plane thresholds on validation results: the documented rule."""
import json
import subprocess
import sys

import pytest

from fetal_biometry.measure import abdomen, biometry, thresholds

from conftest import ROOT

GOOD = {"coverage": 0.7, "largest_gap": 0.2, "residual_mm": 0.5, "fluid_share": 0.01,
        "outside_share": 0.0, "axis_ratio": 0.9}


def case(error: float, accepted_true: bool = True, reasons=(), gap_mm=10.0, **support) -> dict:
    """One validation result as evaluation.case_result writes it (measured under LOOSEST)."""
    return {"case": "x", "ac_error_percent": error, "accepted_true": accepted_true,
            "reasons": list(reasons), "vein_wall_gap_mm": gap_mm, "support": {**GOOD, **support}}


def good_cases(n: int = 20) -> list[dict]:
    return [case(1.0 + i / 20, coverage=0.6 + i / 100, fluid_share=0.01 + i / 1000)
            for i in range(n)]


def test_each_rule_tightens_half_way_to_the_nearest_case_it_keeps():
    results = good_cases() + [case(15.0, coverage=0.3),   # a thin wall: coverage removes it
                              case(-12.0, fluid_share=0.3)]  # swallowed fluid (sign: absolute)
    choice = thresholds.choose(results)
    assert choice.limits["coverage"] == pytest.approx((0.3 + 0.6) / 2)
    assert choice.limits["fluid_share"] == pytest.approx((0.3 + 0.029) / 2)
    for field in ("largest_gap", "residual_mm", "outside_share"):  # never needed: loosest
        assert choice.limits[field] == thresholds.LOOSEST[field]
    assert [step[0] for step in choice.steps] == ["coverage", "fluid_share"]
    outcome = thresholds.outcome(results, choice.limits)
    assert outcome == {**outcome, "measured": 20, "cases": 22, "off_10": 0}
    assert outcome["max"] == pytest.approx(1.95)
    costs = {row["rule"]: row for row in thresholds.costs(results, choice.limits)}
    assert costs["coverage"]["not_measured"] == 1 and costs["coverage"]["off_10"] == 1


def test_the_rule_that_removes_the_fewest_cases_is_tightened():
    # The bad case is extreme on coverage and on fluid; taking it by coverage would also remove
    # the good case with coverage 0.35, by fluid nothing else.
    results = good_cases() + [case(2.0, coverage=0.35), case(20.0, coverage=0.4, fluid_share=0.4)]
    choice = thresholds.choose(results)
    assert choice.limits["coverage"] == thresholds.LOOSEST["coverage"]
    assert choice.limits["fluid_share"] == pytest.approx((0.4 + 0.029) / 2)


def test_a_bad_case_that_looks_like_good_ones_is_left_and_the_goal_reported_missed():
    results = good_cases() + [case(11.0, fluid_share=0.02)]  # as much fluid as half the good ones
    choice = thresholds.choose(results)
    assert choice.limits == thresholds.LOOSEST and choice.steps == []
    assert thresholds.outcome(results, choice.limits)["off_10"] == 1
    assert not thresholds.goal_met([r["ac_error_percent"] for r in results])


def test_the_90th_percentile_goal_also_tightens():
    # No case off by 10 %, but 3 of 13 off by 6-8 %: the 90th percentile misses 5 %. Removing
    # the 8 % and 7 % ones (the longest gaps) meets it; the 6 % one stays measured.
    results = good_cases(10) + [case(6.0 + i, largest_gap=0.6 + i / 20) for i in range(3)]
    choice = thresholds.choose(results)
    assert choice.limits["largest_gap"] == pytest.approx((0.65 + 0.6) / 2)
    outcome = thresholds.outcome(results, choice.limits)
    assert outcome["measured"] == 11 and outcome["max"] == 6.0 and outcome["p90"] <= 5.0


def test_plane_thresholds_need_more_than_one_case():
    transverse = [case(1.0, axis_ratio=0.85 + i / 100) for i in range(10)]
    oblique = [case(1.0, accepted_true=False, axis_ratio=r) for r in (0.6, 0.62, 0.65)]
    chosen = thresholds.choose(transverse + oblique).thresholds
    # Every value in (0.65, 0.85] rejects the three and keeps the ten: the middle of those.
    assert chosen["MIN_PLANE_AXIS_RATIO"] == pytest.approx((0.65 + 0.85) / 2, abs=1e-5)
    one = thresholds.choose(transverse + oblique[:1]).thresholds["MIN_PLANE_AXIS_RATIO"]
    assert one < 0.6  # a single elongated case is no evidence: it stays accepted
    # A vein at the skin line in two unacceptable planes, the others well inside.
    veins = transverse + [case(1.0, accepted_true=False, gap_mm=g) for g in (0.0, 1.0)]
    assert thresholds.choose(veins).thresholds["VEIN_SKIN_MM"] == pytest.approx(5.5, abs=1e-5)


SEGMENTED_GOOD = {"coverage": 0.8, "residual_mm": 0.5, "visible": 0.6, "convexity": 0.97,
                  "area_ratio": 1.0, "outside_share": 0.0, "axis_ratio": 0.9, "disagreement": 0.01}


def test_the_same_rule_chooses_the_segmented_abdomens_limits_and_margin():
    # Two wrong ACs where the fluid method read 20-30 % off, one region overflowing its fit:
    # the margin tightens half-way to the largest disagreement kept, the area ratio (one of two
    # rules on that field) alone moves; the rest keep the loosest limits.
    method = thresholds.SEGMENTED
    results = ([{**case(1.0 + i / 20), "support": {**SEGMENTED_GOOD, "disagreement": 0.01 + i / 200}}
                for i in range(20)]
               + [{**case(e), "support": {**SEGMENTED_GOOD, "disagreement": d}} for e, d in ((14.0, 0.3), (-12.0, 0.2))]
               + [{**case(11.0), "support": {**SEGMENTED_GOOD, "area_ratio": 1.4}}])
    choice = thresholds.choose(results, method)
    assert set(choice.limits) == {rule.constant for rule in abdomen.TRUST_RULES}
    assert choice.limits["DISAGREEMENT"] == pytest.approx((0.2 + 0.105) / 2)
    assert choice.limits["MAX_AREA_RATIO"] == pytest.approx((1.4 + 1.0) / 2)
    assert choice.limits["MIN_AREA_RATIO"] == thresholds.SEGMENTER_LOOSEST["MIN_AREA_RATIO"]
    assert thresholds.outcome(results, choice.limits, method)["measured"] == 20
    assert "DISAGREEMENT = 0.15" in thresholds.constants(choice, method)
    assert "| DISAGREEMENT |" in thresholds.report(choice, {"validation": results}, method)
    # The limits chosen apply: abdomen.measure takes them by constant name.
    assert abdomen.untrusted(abdomen.Support(**{**SEGMENTED_GOOD, "disagreement": 0.16}),
                             choice.limits).startswith(abdomen.DISAGREE)


def test_the_validation_results_carry_what_the_chooser_reads(fetal_data, fetal_model, tmp_path):
    out = tmp_path / "choice.json"
    result = subprocess.run([sys.executable, "tools/choose_thresholds.py", str(fetal_data),
                             "--model", str(fetal_model), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for rule in biometry.TRUST_RULES:
        assert f"{rule.constant} = " in result.stdout
    assert "MIN_PLANE_AXIS_RATIO = " in result.stdout and "| trust rule |" in result.stdout
    saved = json.loads(out.read_text())
    assert set(saved["limits"]) == {rule.field for rule in biometry.TRUST_RULES}
    cases = [c for group in saved["cases"].values() for c in group]
    assert len(cases) == 4 and all("support" in c and "vein_wall_gap_mm" in c for c in cases)
    bad = subprocess.run([sys.executable, "tools/choose_thresholds.py", str(tmp_path / "none")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "choose_thresholds: error:" in bad.stderr
