"""Dense inference: a trained patch classifier run over whole scans and over every frame of a
sweep or cine loop by one engine (:mod:`~fetal_biometry.inference.dense`: plan the windows once
per geometry, run one net in batches, merge), on Caffe or OpenCV's dnn
(:mod:`~fetal_biometry.inference.backends`), giving class maps.
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "backends": ("BACKENDS", "open_net", "set_threads"),
    "dense": ("STRIDE", "TILE", "MAX_PIXELS", "BATCH", "transplant", "make_twin", "DenseClassifier",
              "Plan", "SequenceClassifier", "infer_scan", "write_outputs"),
})
