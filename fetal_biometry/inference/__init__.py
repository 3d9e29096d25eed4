"""Dense inference: class maps from a trained model over whole scans and over every frame of a
sweep or cine loop, by one engine (:mod:`~fetal_biometry.inference.dense`: plan once per geometry,
run one net in batches, merge) for the patch classifier, and the segmenter's U-Net
(:mod:`~fetal_biometry.inference.segmentation`); :func:`~fetal_biometry.inference.dense.engine`
picks either by the model's kind. Nets run on Caffe or OpenCV's dnn
(:mod:`~fetal_biometry.inference.backends`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "backends": ("BACKENDS", "open_net", "set_threads"),
    "dense": ("STRIDE", "TILE", "MAX_PIXELS", "BATCH", "transplant", "make_twin", "DenseClassifier",
              "Plan", "SequenceClassifier", "engine", "infer_scan", "write_outputs"),
    "segmentation": ("Segmenter",),
})
