"""What the benchmarks of inference share: the BLAS Caffe links, its SGEMM rate, threads and the
multiply-adds of a net, so that frame rates are read against this machine's ceiling in the same run.

numpy bundles its own OpenBLAS with suffixed symbols (``scipy_openblas``): the roofline is measured
through the library Caffe's process has loaded (Debian's OpenBLAS here), found by its unsuffixed
``cblas_sgemm``; threads are set for both backends by
:func:`fetal_biometry.inference.backends.set_threads` (threadpoolctl and OpenCV).
"""
from __future__ import annotations

import ctypes
import pathlib
import time

import numpy as np

from fetal_biometry.caffe_env import caffe
from fetal_biometry.nets import checks


def caffe_blas() -> ctypes.CDLL:
    """The BLAS library Caffe links (loaded into this process by importing Caffe)."""
    caffe()
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split()[-1] for line in maps if "blas" in line.split()[-1]})
    for path in libraries:
        library = ctypes.CDLL(path)
        if hasattr(library, "cblas_sgemm") and "site-packages" not in path:
            return library
    raise RuntimeError(f"no BLAS with cblas_sgemm among Caffe's libraries ({libraries})")


def sgemm_rate(blas: ctypes.CDLL, n: int = 2048, repeats: int = 3) -> float:
    """Best single-precision matrix-multiply rate, multiply-adds per second, of an n^3 product."""
    a, b = (np.random.default_rng(0).random((n, n), np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    pointer = ctypes.POINTER(ctypes.c_float)
    args = [ctypes.c_int(101), ctypes.c_int(111), ctypes.c_int(111), n, n, n, ctypes.c_float(1.0),
            a.ctypes.data_as(pointer), n, b.ctypes.data_as(pointer), n, ctypes.c_float(0.0),
            c.ctypes.data_as(pointer), n]
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        blas.cblas_sgemm(*args)
        best = min(best, time.perf_counter() - start)
    assert np.allclose(c[0, :4], a[0] @ b[:, :4], rtol=1e-3)
    return n ** 3 / best


def multiply_adds(prototxt: pathlib.Path, shape: tuple[int, ...] | None = None) -> int:
    """Multiply-adds of one input of a net (reshaped to ``shape`` when given): output size times
    fan-in of every convolution, deconvolution and inner product."""
    net = checks.net(prototxt)
    if shape is not None:
        net.blobs["data"].reshape(*shape)
        net.reshape()
    batch = net.blobs["data"].data.shape[0]
    total = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type in ("Convolution", "InnerProduct"):
            top = net.blobs[net.top_names[name][0]].data
            total += top.size // batch * int(np.prod(net.params[name][0].data.shape[1:]))
        elif layer.type == "Deconvolution":  # every input value meets every kernel weight
            bottom = net.blobs[net.bottom_names[name][0]].data
            total += bottom.size // batch * int(np.prod(net.params[name][0].data.shape[1:]))
    return total
