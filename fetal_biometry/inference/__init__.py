"""Dense inference: a trained patch classifier run over whole scans
(:mod:`~fetal_biometry.inference.dense`) and over every frame of a sweep or cine loop in
batches (:mod:`~fetal_biometry.inference.sequences`), giving class maps.
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "dense": ("STRIDE", "TILE", "MAX_PIXELS", "transplant", "DenseClassifier", "infer_scan",
              "write_outputs"),
    "sequences": ("BATCH", "SequenceClassifier"),
})
