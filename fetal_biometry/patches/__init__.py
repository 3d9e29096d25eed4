"""Patches for the classifier: the beam-direction encodings of a patch
(:mod:`~fetal_biometry.patches.encoding`), the training augmentations
(:mod:`~fetal_biometry.patches.augment`) and the patch LMDBs with their manifest
(:mod:`~fetal_biometry.patches.records`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "encoding": ("ENCODINGS", "INPUT_SCALE", "SIZE", "channels", "encode", "sample_centers",
                 "extract"),
    "augment": ("GRAY_PER_DB", "Ranges", "RANGES", "Transform", "draw", "matrix", "fan_centre",
                "warp", "intensity", "apply"),
    "records": ("FORMAT", "VERSION", "SPLITS", "dataset_scans", "at_spacing",
                "target_spacing", "RecordError", "split_cases", "given_splits", "MIN_PATCH",
                "MAX_AUGMENT", "check_arguments", "check", "scan_records", "augmented_records",
                "build"),
})
