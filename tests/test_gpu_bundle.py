"""The GPU bundle (tools/gpu_bundle.sh): the CUDA Caffe carried to a machine that has CUDA 13.

Checked without a GPU, as far as that goes: the tarball fits in 40 MiB and holds no CUDA
library; every ELF in it finds its neighbours through an $ORIGIN RPATH; in a bare Debian 12
container (podman, `debian:bookworm` without the build's packages) with the PyPI toolkit's
libraries mounted where a PyTorch image keeps them (site-packages/nvidia/*/lib), the launcher
finds them, `ldd` resolves everything, `caffe --version` and a CPU `caffe time` run, and
`caffe device_query` is one sentence and exit 1, not an abort; without them the launcher names
what is missing. tools/gpu_check.sh --cpu-only runs the CPU half of the GPU check with the
bundle on this machine. The bundle comes from the CUDA build (28 CPU-minutes), which `make
test` never starts: these tests run where `make gpu-bundle` has made it, and skip elsewhere.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from tests.cuda_build import explain, prefix as cuda_prefix, run

from fetal_biometry import caffe_env
from fetal_biometry.io import lmdb_writer

pytestmark = pytest.mark.gpu

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/debian:bookworm"  # docker/podman_setup.sh makes it
SITE = "/usr/local/lib/python3.12/site-packages/nvidia"  # where a PyTorch image holds CUDA's wheels
CUDA_NAMES = re.compile(r"lib(cuda|cudart|cublas|cublasLt|curand|nccl)\.so")


@pytest.fixture(scope="module")
def prefix() -> pathlib.Path:
    return cuda_prefix()


@pytest.fixture(scope="module")
def bundle(prefix) -> pathlib.Path:
    proc = run(["bash", ROOT / "tools/gpu_bundle.sh", "--print"])
    assert proc.returncode == 0, explain(proc)
    path = pathlib.Path(proc.stdout.strip())
    if not path.is_file():
        pytest.skip(f"no GPU bundle at {path}: `make gpu-bundle` makes it from the CUDA build (a few minutes)")
    return path


@pytest.fixture(scope="module")
def unpacked(bundle, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("bundle")
    with tarfile.open(bundle) as tar:
        tar.extractall(folder, filter="tar")
    return folder / "fetal-caffe-gpu"


@pytest.fixture(scope="module")
def nvidia_libs(prefix, unpacked) -> dict[str, pathlib.Path]:
    """The CUDA libraries the bundle needs, as NVIDIA's wheels install them (and PyTorch holds
    them): container path under site-packages/nvidia -> the toolkit's file. Only the wheels' own
    files: the toolkit's convenience links (libnccl.so.2 inside cu13/lib) are left out."""
    proc = run(["ldd", prefix / "lib/libcaffe.so"])
    found = re.search(r"libcudart\.so\.13 => (\S+)", proc.stdout)
    assert found, explain(proc)
    nvidia = pathlib.Path(found.group(1)).parents[2]  # .../nvidia/cu13/lib/libcudart.so.13
    needed = re.search(r"^cuda: (.*)$", (unpacked / "MANIFEST").read_text(), re.M).group(1).split()
    files = {}
    for name in needed:
        wheel_file = next(f for f in nvidia.glob(f"*/lib/{name}") if not f.is_symlink())
        files[f"{SITE}/{wheel_file.relative_to(nvidia)}"] = wheel_file
    return files


@pytest.fixture(scope="module")
def podman():
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.skip("the bare-container check needs rootful podman (docker/podman_setup.sh, as root)")
    proc = run(["bash", ROOT / "docker/podman_setup.sh"], 900)
    assert proc.returncode == 0, "podman setup failed: " + explain(proc)


def _container(unpacked: pathlib.Path, nvidia_libs: dict | None, *args: str) -> subprocess.CompletedProcess:
    """The bundle's launcher in a bare debian:bookworm: no network, nothing writable but /tmp."""
    mounts = ["-v", f"{unpacked}:/opt/fetal-caffe-gpu:ro", "-v", f"{ROOT / 'prototxt'}:/work/prototxt:ro"]
    for inside, outside in (nvidia_libs or {}).items():
        mounts += ["-v", f"{outside}:{inside}:ro"]
    return run(["podman", "run", "--rm", "--network", "none", "--read-only", *mounts, "-w", "/work",
                 BASE_IMAGE, "/opt/fetal-caffe-gpu/caffe", *args], 300)


def test_tarball_fits_and_carries_no_cuda(bundle):
    assert bundle.stat().st_size <= 40 * 2**20, f"{bundle}: {bundle.stat().st_size / 2**20:.1f} MiB"
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    for needed in ("caffe", "bin/caffe", "lib/libcaffe.so.1.0.0", "lib/libopenblas.so.0", "MANIFEST"):
        assert f"fetal-caffe-gpu/{needed}" in names, needed
    assert not [n for n in names if CUDA_NAMES.search(n)], [n for n in names if CUDA_NAMES.search(n)]


def test_every_elf_finds_its_neighbours_through_origin(unpacked):
    elves = [unpacked / "bin/caffe", *sorted(unpacked.glob("lib/*.so.*"))]
    for elf in elves:
        proc = run(["readelf", "-d", elf])
        assert proc.returncode == 0, explain(proc)
        rpath = re.search(r"\(RPATH\)\s+Library rpath: \[(.*)\]", proc.stdout)
        assert rpath and all(p.startswith("$ORIGIN") for p in rpath.group(1).split(":")), f"{elf}: {proc.stdout}"
        assert "(RUNPATH)" not in proc.stdout, f"{elf} has a RUNPATH (LD_LIBRARY_PATH would win over it)"


def test_runs_in_a_bare_debian_with_cuda_from_site_packages(podman, unpacked, nvidia_libs):
    proc = _container(unpacked, nvidia_libs, "--version")
    assert proc.returncode == 0 and "caffe version 1.0.0" in proc.stdout, explain(proc)
    assert f"CUDA libraries from {SITE}/cu13/lib {SITE}/nccl/lib" in proc.stderr, proc.stderr
    assert "no NVIDIA driver library" in proc.stderr, proc.stderr


def test_every_library_resolves_in_the_container(podman, unpacked, nvidia_libs):
    proc = _container(unpacked, nvidia_libs, "--bundle-info")
    assert proc.returncode == 0, explain(proc)
    assert "not found" not in proc.stdout, proc.stdout
    for cuda in ("libcudart.so.13", "libcublas.so.13", "libcurand.so.10", "libnccl.so.2"):
        assert re.search(rf"{re.escape(cuda)} => {SITE}/(cu13|nccl)/lib/", proc.stdout), f"{cuda}:\n{proc.stdout}"
    for own in ("libcaffe.so.1.0.0", "libopenblas.so.0", "libprotobuf.so.32", "libglog.so.1", "libhdf5_serial.so.103"):
        assert re.search(rf"{re.escape(own)} => /opt/fetal-caffe-gpu/(bin/\.\./)?lib/", proc.stdout), f"{own}:\n{proc.stdout}"


@pytest.mark.parametrize("flags", [["--gpu", "0"], []], ids=["gpu0", "every-gpu"])
def test_device_query_without_a_gpu_is_one_sentence(podman, unpacked, nvidia_libs, flags):
    proc = _container(unpacked, nvidia_libs, "device_query", *flags)
    assert proc.returncode == 1, explain(proc)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("caffe: error: GPU "), proc.stderr
    assert "requested, but no CUDA device visible" in errors[0] and "CUDA runtime 13." in errors[0], errors[0]
    assert "release 580 or later" in errors[0] and "Check failed" not in proc.stderr, proc.stderr


def test_cpu_forward_backward_in_the_container(podman, unpacked, nvidia_libs):
    proc = _container(unpacked, nvidia_libs, "time", "--model=prototxt/tutorial_cnn/deploy.prototxt", "--iterations=2")
    assert proc.returncode == 0, explain(proc)
    assert re.search(r"Average Forward pass: [0-9.]+ ms", proc.stderr), proc.stderr


def test_missing_cuda_libraries_are_named(podman, unpacked):
    proc = _container(unpacked, None, "--version")
    assert proc.returncode == 1, explain(proc)
    assert "error: CUDA 13 libraries not found: " in proc.stderr and "libcudart.so.13" in proc.stderr, proc.stderr
    assert "pip install nvidia-cuda-runtime" in proc.stderr and "Looked in:" in proc.stderr, proc.stderr


def _small_lmdbs(folder: pathlib.Path) -> None:
    """gpu_check's four LMDBs, random but of the real nets' shapes: 200 training, 100 validation records."""
    rng = np.random.default_rng(0)
    for name, shape, classes in (("mnist", (1, 28, 28), 10), ("fetal_channels", (3, 48, 48), 5)):
        for split, count in (("train", 200), ("val", 100)):
            records = ((b"%08d" % i, lmdb_writer.to_datum(rng.integers(0, 256, shape, np.uint8),
                                                          int(rng.integers(classes))).SerializeToString())
                       for i in range(count))
            lmdb_writer.write(folder / name / f"{split}_lmdb", records)


def test_gpu_check_cpu_half_runs_from_the_bundle(bundle, tmp_path):
    """The bundle's caffe times the nets; the project's CPU Caffe trains and tests (without an
    NVIDIA driver a CUDA Caffe's data thread aborts, even on the CPU)."""
    _small_lmdbs(tmp_path / "data")
    out = tmp_path / "check"
    cpu_caffe = caffe_env.binary("caffe")
    proc = run(["bash", ROOT / "tools/gpu_check.sh", "--cpu-only", "--cpu-caffe", cpu_caffe, "--bundle", bundle,
                 "--data", tmp_path / "data", "--out", out, "--iterations", "20"], 600)
    assert proc.returncode == 0, explain(proc)
    summary = (out / "summary.txt").read_text()
    assert "device_query without a GPU: caffe: error: GPU 0 requested, but no CUDA device visible" in summary, summary
    for name, batch in (("tutorial_cnn", 64), ("fetal_channels", 64), ("segmenter_channels", 4)):
        assert re.search(rf"caffe time {name}, batch {batch}: CPU forward [0-9.]+ ms, backward [0-9.]+ ms", summary), summary
    for name in ("tutorial_cnn", "fetal_channels"):
        assert re.search(rf"caffe train {name}, 20 iterations: CPU [0-9.]+ it/s, accuracy [0-9.]+", summary), summary
        assert re.search(rf"caffe test {name} on CPU, batch 0: accuracy = [0-9.]+, loss = [0-9.]+", summary), summary
    assert "NCCL: not exercised: 0 GPU(s) visible" in summary, summary
