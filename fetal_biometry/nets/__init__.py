"""Nets and their training: NetSpec nets (:mod:`~fetal_biometry.nets.spec`) and solvers, the
checked-in catalogue of both, the checks that speak before Caffe would abort, training with
pycaffe, and the model folder a training ends in (:mod:`~fetal_biometry.nets.model`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "spec": ("LOSSES", "TUTORIAL_PARAMETERS", "KERNEL", "POOL", "STRIDE", "pooled_side",
             "tutorial_cnn_inputs", "tutorial_cnn", "tutorial_cnn_deploy",
             "patch_classifier", "patch_classifier_deploy", "patch_classifier_dense",
             "UNET_DEPTH", "UNET_WIDTH", "BALANCES", "unet_multiple", "segmenter", "segmenter_deploy",
             "SEGMENTER_LAYER_TYPES", "count_parameters", "save"),
    "solvers": ("adam", "sgd", "snapshot_iteration"),
    "catalog": ("FETAL_ITERATIONS", "DIAGRAMS", "generate"),
    "checks": ("INT_MAX", "CheckError", "COMPUTE_LAYERS", "TRAINING_LAYERS", "ALLOWED_LAYERS",
               "check_layer_types", "check_net_file", "check_solver_file", "net",
               "solver_in_child", "read_weights", "fatal_summary", "run_caffe_child",
               "LayerBlobs", "blob_shapes", "check_weights", "read_solverstate",
               "check_solverstate", "history_per_parameter"),
    "sizes": ("blob_counts", "largest_input", "check_input_size"),
    "training": ("DATA_LAYERS", "METRICS", "TOOL", "TrainingError", "Result", "read_prototxt",
                 "solver_nets", "precheck", "SnapshotError",
                 "snapshot", "latest_snapshot", "train", "trained"),
    "monitor": ("loss", "validate", "Divergence"),
    "model": ("FORMAT", "VERSION", "READABLE", "FILE", "PATCH_CLASSIFIER", "SEGMENTER", "KINDS",
              "ModelError", "Model", "records_manifest", "unet_shape", "write", "load"),
})
