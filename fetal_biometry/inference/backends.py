"""Where a deploy net runs: Caffe (pycaffe) or OpenCV's dnn module, behind one small interface.

:func:`open_net` gives a :class:`CaffeNet` or an :class:`OpenCVNet` for a fully convolutional
deploy net and its weights; both take a batch of input planes of any size, (N, C, H, W)
float32, and return the ``prob`` blob, (N, K, h, w) float32. Each holds ONE net, reshaped to the
batch it is given, so memory follows the largest batch seen, not the number of shapes.

OpenCV's dnn (``cv2.dnn.readNetFromCaffe``, OpenCV 4.x: OpenCV 5 dropped the Caffe importer)
needs no Caffe build: a model folder then classifies on a machine with OpenCV alone. The net
file passes the same layer allow-list first (:func:`fetal_biometry.nets.checks.check_net_file`),
so neither loader ever reads a net the project would not generate.

:func:`set_threads` is the one place that sets how many cores inference uses: OpenBLAS's threads
(Caffe's BLAS) and OpenCV's.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

BACKENDS = ("caffe", "opencv")


def set_threads(threads: int) -> None:
    """Use ``threads`` cores for inference: OpenBLAS (Caffe's BLAS: the environment variable for a
    Caffe not loaded yet, threadpoolctl for one loaded already) and OpenCV's dnn and warps."""
    import cv2
    from threadpoolctl import threadpool_limits

    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    threadpool_limits(threads, user_api="blas")
    cv2.setNumThreads(threads)


class CaffeNet:
    """A deploy net run by pycaffe; ``net`` is the ``caffe.Net`` (for net surgery)."""

    def __init__(self, deploy: str | os.PathLike, weights: str | os.PathLike | None = None, net=None):
        from fetal_biometry.nets import checks

        if net is None:
            if weights is not None:
                checks.check_weights(deploy, weights)  # Caffe would abort on weights of another net
            net = checks.net(deploy, weights)
        self.net = net

    def run(self, batch: np.ndarray) -> np.ndarray:
        data = self.net.blobs["data"]
        if data.data.shape != batch.shape:
            data.reshape(*batch.shape)  # blobs grow only: memory stays at the largest batch
            self.net.reshape()
        data.data[...] = batch
        return self.net.forward()["prob"].copy()


class OpenCVNet:
    """A deploy net run by OpenCV's dnn module (no Caffe needed)."""

    def __init__(self, deploy: str | os.PathLike, weights: str | os.PathLike):
        import cv2

        from fetal_biometry.nets import checks

        checks.check_net_file(deploy, "deploy")  # the allow-list guards OpenCV's loader too
        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise ValueError(f"OpenCV {cv2.__version__} cannot read Caffe nets (OpenCV 5 removed the "
                             "importer); install the opencv-python-headless of requirements.txt (4.x)")
        if not pathlib.Path(weights).is_file():
            raise ValueError(f"{weights}: no such weights file")
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(deploy), str(weights))
        except cv2.error as error:
            raise ValueError(f"{deploy} with {weights}: OpenCV cannot load the net "
                             f"({str(error).strip().splitlines()[-1]})") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.net.setInput(np.ascontiguousarray(batch, np.float32))
        return self.net.forward("prob")


def open_net(deploy: str | os.PathLike, weights: str | os.PathLike, backend: str = "caffe"):
    """The net of ``deploy`` with ``weights`` on ``backend`` (one of :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return CaffeNet(deploy, weights) if backend == "caffe" else OpenCVNet(deploy, weights)
