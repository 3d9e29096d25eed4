"""The experiments and the demo: simulated datasets and jobs that train and evaluate one net each
(:mod:`~fetal_biometry.experiments.jobs`), the plans and their aggregation
(:mod:`~fetal_biometry.experiments.plans`), and ``make demo``'s main job
(:mod:`~fetal_biometry.experiments.demo`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "jobs": ("SUMMARY", "MODEL", "SEEDS", "SCANS", "PATCH_SIZES", "AUGMENT",
             "VAL_CASES", "TIE", "JOB_MINUTES", "EVALUATION_MINUTES", "GENERATOR",
             "ExperimentError", "Recipe", "RECIPES", "HALVES", "groups", "appearance",
             "generator", "holds", "simulated", "Job", "Setup", "training_scans", "read_record",
             "done", "trained", "minutes", "run_job", "job_from_spec", "datasets", "prepare",
             "run_alone", "run", "SEGMENTER_JOB_MINUTES", "SEGMENTER_WIDTHS", "SEGMENTER_SPACINGS",
             "SEGMENTER_WEIGHTINGS", "SEGMENTER_SIZE_ENCODING", "SEGMENTER_TIE", "UNNAMED_WEIGHTING",
             "job_of"),
    "plans": ("Plan", "patch_size_plan", "ablation_plan", "learning_curve_plan",
              "thresholds_plan", "variants", "randomisations_plan", "HEADINGS", "METRICS",
              "PERCENT", "mean_sd", "aggregate", "cell", "table", "PANELS", "STYLES", "curves",
              "choose_patch", "limits_method", "choose_limits", "report", "differences", "SEGMENTER_SETS",
              "segmenter_plan", "segmenter_curve_plan", "segmenter_size_plan", "choose_segmenter"),
    "demo": ("mnist_lmdbs", "test_accuracy", "run_mnist", "train_and_evaluate", "SETS",
             "PATCH_ENCODINGS", "SEGMENTER_ENCODINGS", "simulate_sets", "patch_lmdbs",
             "segmenter_records", "print_tables", "run_fetal"),
})
