"""Evaluation: a model against the truth of a dataset's scans (:mod:`~fetal_biometry.evaluation.scans`)
and of simulated sweeps (:mod:`~fetal_biometry.evaluation.sweeps`), every metric of both
(:mod:`~fetal_biometry.evaluation.metrics`), and the HTML report (:mod:`~fetal_biometry.evaluation.report`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "metrics": ("OFF_PERCENT", "PLANE_OUTCOMES", "agreement", "hc_errors", "plane_outcomes",
                "rejection_reasons", "ac_errors", "wfss", "nae", "dice", "combined"),
    "scans": ("TYPICAL", "provenance", "case_result", "maps_file",
              "stored_results", "remeasure", "case_results", "case_picture", "pick_cases"),
    "sweeps": ("sweep_metrics", "evaluate_sweep"),
    "report": ("STYLE", "FIGURES", "model_figures", "SUMMARY_COLUMNS", "summary_row",
               "summary_table", "model_section", "comparison_section", "read_records", "write"),
})
