"""The CUDA build of Caffe (tools/caffe_cuda.sh), checked as far as a machine without a GPU can.

The build compiles and links with NVIDIA's PyPI toolchain (docker/cuda_toolkit.sh); none of it
needs a GPU. These tests check the result whenever it is in the cache: the binary runs, the
CUDA libraries resolve from the toolkit, the fatbinaries hold sm_80 and sm_90 code and sm_90
PTX, pycaffe imports, and asking for a GPU where none is visible is a sentence and exit 1, not
a Caffe abort. Building it cold takes 28 CPU-minutes (about 15 minutes on 2 idle cores, 80 on
this shared machine under load), which with the GPU image would push a cold CI run past 45
minutes, so `make test` does not build it; `make test-gpu-build` does, then runs this file.
The CPU-only refusal is tested always.
"""
from __future__ import annotations

import pathlib
import re
import sys

import pytest

from tests.cuda_build import explain, prefix as cuda_prefix, run

pytestmark = pytest.mark.gpu

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARIES = ("libcudart.so.13", "libcublas.so.13", "libcurand.so.10", "libnccl.so.2")


@pytest.fixture(scope="module")
def prefix() -> pathlib.Path:
    return cuda_prefix()


@pytest.fixture(scope="module")
def toolkit(prefix) -> pathlib.Path:
    """The PyPI toolkit libcaffe links: cuda-toolkit-<key>/nvidia/cu13 in the same cache."""
    proc = run(["ldd", prefix / "lib/libcaffe.so"])
    found = re.search(r"libcudart\.so\.13 => (\S+)", proc.stdout)
    assert found, explain(proc)
    root = pathlib.Path(found.group(1)).resolve().parents[3]
    assert root.parent == prefix.parent and root.name.startswith("cuda-toolkit-"), found.group(1)
    return root / "nvidia/cu13"


@pytest.fixture(scope="module")
def no_gpu():
    if list(pathlib.Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("a GPU is visible here: tools/gpu_check.sh checks the GPU path")


def test_caffe_binary_runs(prefix):
    proc = run([prefix / "bin/caffe", "--version"])
    assert proc.returncode == 0, explain(proc)
    assert "caffe version 1.0.0" in proc.stdout + proc.stderr


@pytest.mark.parametrize("library", ["lib/libcaffe.so", "python/caffe/_caffe.so"])
def test_cuda_libraries_resolve_from_the_toolkit(prefix, toolkit, library):
    proc = run(["ldd", prefix / library])
    assert proc.returncode == 0 and "not found" not in proc.stdout, explain(proc)
    for name in LIBRARIES:
        found = re.search(rf"{re.escape(name)} => (\S+)", proc.stdout)
        assert found, f"{library} does not link {name}:\n{proc.stdout}"
        assert pathlib.Path(found.group(1)).resolve().is_relative_to(toolkit.parent), \
            f"{name} resolves outside the toolkit {toolkit}: {found.group(1)}"


def test_fatbinary_holds_sm80_sm90_and_ptx(prefix, toolkit):
    cuobjdump = toolkit / "bin/cuobjdump"
    elf = run([cuobjdump, "--list-elf", prefix / "lib/libcaffe.so"], timeout=300)
    ptx = run([cuobjdump, "--list-ptx", prefix / "lib/libcaffe.so"], timeout=300)
    assert elf.returncode == 0 and ptx.returncode == 0, explain(elf) + explain(ptx)
    archs = set(re.findall(r"\.(sm_\d+)\.cubin", elf.stdout))
    assert archs == {"sm_80", "sm_90"}, archs
    assert set(re.findall(r"\.(sm_\d+)\.ptx", ptx.stdout)) == {"sm_90"}, ptx.stdout[-500:]


def test_pycaffe_imports_under_the_prefix(prefix):
    proc = run([sys.executable, "-c", "from fetal_biometry import caffe_env; "
                 "print(caffe_env.caffe().__file__)"], FETAL_CAFFE_PREFIX=str(prefix))
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip().startswith(str(prefix)), proc.stdout


def test_set_mode_gpu_without_a_device_is_a_clear_error(prefix, no_gpu):
    code = ("from fetal_biometry import caffe_env\n"
            "try:\n    caffe_env.set_device(0)\n"
            "except caffe_env.DeviceError as err:\n    print(err)\n")
    proc = run([sys.executable, "-c", code], FETAL_CAFFE_PREFIX=str(prefix))
    assert proc.returncode == 0, explain(proc)
    assert "no CUDA device visible" in proc.stdout and "CUDA runtime 13." in proc.stdout, proc.stdout


def test_train_gpu_without_a_device_exits_1_and_writes_nothing(prefix, no_gpu, tmp_path):
    out = tmp_path / "run"
    proc = run([sys.executable, "tools/train.py", "prototxt/tutorial_cnn/solver.prototxt",
                 "--out", out, "--gpu", "0"], FETAL_CAFFE_PREFIX=str(prefix))
    assert proc.returncode == 1, explain(proc)
    assert "train: error: GPU 0 requested, but no CUDA device visible" in proc.stderr, proc.stderr
    assert "driver" in proc.stderr and not out.exists()


def test_infer_gpu_without_a_device_exits_1_and_writes_nothing(prefix, no_gpu, tmp_path):
    out = tmp_path / "out"
    proc = run([sys.executable, "tools/infer.py", tmp_path / "model", tmp_path, "--out", out,
                 "--gpu", "0"], FETAL_CAFFE_PREFIX=str(prefix))
    assert proc.returncode == 1, explain(proc)
    assert "infer: error: GPU 0 requested, but no CUDA device visible" in proc.stderr, proc.stderr
    assert not out.exists()


def test_cpu_only_caffe_refuses_gpu_clearly(tmp_path):
    """The default (CPU_ONLY) build: --gpu is refused before anything is written."""
    out = tmp_path / "run"
    proc = run([sys.executable, "tools/train.py", "prototxt/tutorial_cnn/solver.prototxt",
                 "--out", out, "--gpu", "0"])
    assert proc.returncode == 1, explain(proc)
    assert "was built CPU_ONLY" in proc.stderr and "make caffe-cuda" in proc.stderr, proc.stderr
    assert not out.exists()
