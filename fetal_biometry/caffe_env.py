"""Where Caffe lives and how to load it.

``import caffe`` costs about 0.4 s and prints glog lines; code that only reads or writes
records needs nothing but the generated ``caffe_pb2`` module, which :func:`proto` loads on
its own, without running ``caffe/__init__.py``.

Caffe is found the way Python finds any package (``tools/bootstrap.sh`` puts a ``.pth`` file
into the virtual environment pointing at the cached build). To use another Caffe install, e.g.
inside the Docker image, set ``FETAL_CAFFE_PREFIX`` to its prefix (the folder holding
``bin/caffe`` and ``python/caffe``).
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import pathlib
import re
import shutil
import sys
import types

_HINT = ("Run `make demo` (or tools/bootstrap.sh) to build Caffe into the project's cache, "
         "or set FETAL_CAFFE_PREFIX to an existing Caffe install prefix.")


def _prefix_from_env() -> pathlib.Path | None:
    prefix = os.environ.get("FETAL_CAFFE_PREFIX")
    return pathlib.Path(prefix) if prefix else None


def package_dir() -> pathlib.Path:
    """Folder of the ``caffe`` Python package (``.../python/caffe``)."""
    prefix = _prefix_from_env()
    if prefix is not None:
        path = prefix / "python" / "caffe"
        if not (path / "__init__.py").is_file():
            raise ImportError(f"FETAL_CAFFE_PREFIX={prefix}: no python/caffe package there. {_HINT}")
        return path
    spec = importlib.util.find_spec("caffe")
    if spec is None or spec.origin is None:
        raise ImportError(f"pycaffe is not installed. {_HINT}")
    return pathlib.Path(spec.origin).parent


def prefix() -> pathlib.Path:
    """Install prefix of the Caffe in use (holds ``bin/`` and ``python/``)."""
    return package_dir().parents[1]


def binary(name: str = "caffe") -> str:
    """Path of one of Caffe's command-line tools (``caffe``, ``convert_imageset``, ...)."""
    candidate = prefix() / "bin" / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"Caffe tool {name!r} not found in {prefix() / 'bin'} nor on PATH. {_HINT}")
    return found


@functools.lru_cache(maxsize=1)
def proto() -> types.ModuleType:
    """The generated ``caffe_pb2`` module, loaded without importing pycaffe."""
    if "caffe.proto.caffe_pb2" in sys.modules:
        return sys.modules["caffe.proto.caffe_pb2"]
    # Registered under its own name, so a later ``import caffe`` reuses it instead of adding
    # caffe.proto a second time to protobuf's descriptor pool (which fails).
    name = "caffe.proto.caffe_pb2"
    spec = importlib.util.spec_from_file_location(name, package_dir() / "proto" / "caffe_pb2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def caffe() -> types.ModuleType:
    """Import pycaffe, with glog quiet unless ``GLOG_minloglevel`` says otherwise."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    prefix_env = _prefix_from_env()
    if prefix_env is not None and str(prefix_env / "python") not in sys.path:
        sys.path.insert(0, str(prefix_env / "python"))
    try:
        import caffe as module
    except ImportError as err:
        raise ImportError(f"cannot import pycaffe ({err}). {_HINT}") from err
    # If proto() ran first, the import found caffe_pb2 in sys.modules and did not bind it to
    # its package; bind it, so ``caffe.proto.caffe_pb2`` works as usual.
    module.proto.caffe_pb2 = sys.modules["caffe.proto.caffe_pb2"]
    return module


# The oldest NVIDIA driver release each CUDA major version runs on (minor-version compatibility).
_MIN_DRIVER = {11: 450, 12: 525, 13: 580}


class DeviceError(RuntimeError):
    """A GPU was requested that this Caffe or this machine cannot give."""


def set_device(gpu: int | None) -> None:
    """Run on CPU (``gpu=None``) or on GPU ``gpu``, after :func:`check_device`."""
    caffe_module = caffe()
    if gpu is None:
        caffe_module.set_mode_cpu()
        return
    check_device(gpu)
    caffe_module.set_device(gpu)
    caffe_module.set_mode_gpu()


def check_device(gpu: int) -> None:
    """Raise :class:`DeviceError` unless this Caffe has CUDA and GPU ``gpu`` is visible.

    Caffe itself aborts the process (glog's CHECK) when asked for a device it cannot open;
    this asks the CUDA runtime that Caffe links, so the caller can print a sentence instead.
    """
    caffe()  # loads libcaffe and, in a CUDA build, the CUDA runtime it links
    runtime = _cuda_runtime()
    if runtime is None:
        raise DeviceError(f"GPU {gpu} requested, but this Caffe ({prefix()}) was built CPU_ONLY: "
                          "drop --gpu, or build the CUDA Caffe (make caffe-cuda) and point "
                          "FETAL_CAFFE_PREFIX at the prefix it prints")
    count = ctypes.c_int(0)
    status = runtime.cudaGetDeviceCount(ctypes.byref(count))
    if status != 0 or count.value == 0:
        raise DeviceError(f"GPU {gpu} requested, but no CUDA device visible ({_diagnosis(runtime, status)}). "
                          "Drop --gpu to run on the CPU.")
    if not 0 <= gpu < count.value:
        raise DeviceError(f"GPU {gpu} requested, but only {count.value} CUDA device(s) visible "
                          f"(ids 0 to {count.value - 1})")


def _cuda_runtime() -> ctypes.CDLL | None:
    """The CUDA runtime this process loaded with libcaffe, or None (a CPU_ONLY Caffe)."""
    if not hasattr(caffe(), "set_device"):
        return None
    # /proc/self/maps names the very file the dynamic linker chose through libcaffe's RPATH.
    loaded = re.search(r"/\S*/libcudart\.so\.[0-9]+", pathlib.Path("/proc/self/maps").read_text())
    if loaded is None:
        return None
    runtime = ctypes.CDLL(loaded.group())
    runtime.cudaGetErrorString.restype = ctypes.c_char_p
    return runtime


def _diagnosis(runtime: ctypes.CDLL, status: int) -> str:
    """Why no device: the runtime's error, both versions, and the driver this CUDA needs."""
    reason = runtime.cudaGetErrorString(status).decode() if status else "0 devices"
    runtime_version = _version(runtime.cudaRuntimeGetVersion)
    driver_version = _version(runtime.cudaDriverGetVersion)
    major = int(runtime_version.split(".")[0])
    return (f"{reason}; CUDA runtime {runtime_version}, "
            + (f"driver for CUDA {driver_version}" if driver_version else "no NVIDIA driver loaded")
            + f". CUDA {major} needs an NVIDIA driver of release {_MIN_DRIVER.get(major, '?')} or "
            "later and a visible GPU; in a container, start it with --gpus all (Docker) or "
            "--device nvidia.com/gpu=all (podman)")


def _version(query) -> str | None:
    """'13.5' from cudaRuntimeGetVersion or cudaDriverGetVersion (None: no driver)."""
    value = ctypes.c_int(0)  # 1000 * major + 10 * minor; 0 when there is no driver
    if query(ctypes.byref(value)) != 0 or value.value == 0:
        return None
    return f"{value.value // 1000}.{value.value % 1000 // 10}"
