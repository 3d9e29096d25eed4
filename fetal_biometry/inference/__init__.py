"""Dense inference: a trained patch classifier run over whole scans
(:mod:`~fetal_biometry.inference.dense`), the segmenter's U-Net over whole scans
(:mod:`~fetal_biometry.inference.segmentation`; :func:`~fetal_biometry.inference.dense.engine`
picks either by the model's kind) and over every frame of a sweep or cine loop in
batches (:mod:`~fetal_biometry.inference.sequences`), giving class maps.
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "dense": ("STRIDE", "TILE", "MAX_PIXELS", "transplant", "DenseClassifier", "engine",
              "infer_scan", "write_outputs"),
    "segmentation": ("Segmenter",),
    "sequences": ("BATCH", "SequenceClassifier"),
})
