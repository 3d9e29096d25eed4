"""From class maps to measurements: the ellipse fit and its geometry
(:mod:`~fetal_biometry.measure.ellipse`), the abdominal circumference and the plane verdict
(:mod:`~fetal_biometry.measure.biometry`), the trust limits chosen on validation scans
(:mod:`~fetal_biometry.measure.thresholds`), the best plane of a sweep
(:mod:`~fetal_biometry.measure.sweeps`); the head's HC, OFD, BPD and cephalic index
(:mod:`~fetal_biometry.measure.head`), the femur length (:mod:`~fetal_biometry.measure.femur`),
which plane a map shows and what it allows measuring (:mod:`~fetal_biometry.measure.plane`), and
the panel: centiles, age and weight (:mod:`~fetal_biometry.measure.growth`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "ellipse": ("Ellipse", "ellipse_perimeter", "ellipse_frame", "normalized_radius",
                "ellipse_mask", "ellipse_points", "direct_fit", "conic_params", "from_params",
                "record", "Conditioned", "sampson", "fit"),
    "biometry": ("BODY_CLASSES", "EDGE_MARGIN_PX", "MIN_BOUNDARY_POINTS", "SEMI_AXES_MM",
                 "MIN_AXIS_RATIO", "MIN_BODY_MM2", "INLIER_MM", "COVERAGE_BINS",
                 "REFINED_HYPOTHESES", "MIN_STOMACH_MM2", "MIN_VEIN_MM2", "MAX_STOMACH_SHARE",
                 "MAX_VEIN_SHARE", "MIN_COVERAGE", "MAX_GAP", "MAX_RESIDUAL_MM",
                 "MAX_FLUID_SHARE", "MAX_OUTSIDE_SHARE", "MIN_PLANE_AXIS_RATIO", "VEIN_SKIN_MM",
                 "PLANE_THRESHOLDS", "NOT_MEASURED", "NO_BOUNDARY", "Landmark", "Support",
                 "Rule", "TRUST_RULES", "in_force", "Measurement", "check_map", "majority_filter",
                 "boundary_points", "fit_ellipse", "coverage", "largest_gap", "residual_mm",
                 "support", "untrusted", "find_landmark", "assess_plane", "measure",
                 "hadlock_efw"),
    "thresholds": ("MAX_ERROR_PERCENT", "MAX_P90_PERCENT", "MAX_COST_PER_ERROR",
                   "MIN_PLANE_GAIN", "LOOSEST", "PLANE_RULES", "Choice", "goal_met",
                   "choose_trust", "choose_plane", "costs", "outcome", "constants", "report"),
    "growth": ("MEASUREMENTS", "STANDARDS", "Standard", "mean_sd", "zscore", "centile",
               "value_at_centile", "efw_zscore", "efw_at_centile", "AgeEstimate", "ga_from_hc",
               "ga_hadlock", "ga_from_dates", "ga_argument", "exam_measurements",
               "estimated_weight", "age_estimate", "panel"),
    "head": ("HeadMeasurement", "HeadSupport", "landmark_problems", "midline_problem"),
    "femur": ("FemurMeasurement", "end_width_ratio"),
    "plane": ("PLANE_TYPES", "PlaneResult", "plane_type", "measure_plane"),
    "sweeps": ("CANDIDATES", "enclosed_bodies", "landmark_score", "plane_score", "Candidate",
               "SweepResult", "analyse", "predicted_mask"),
})
