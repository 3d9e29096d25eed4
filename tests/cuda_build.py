"""The CUDA build of Caffe as the GPU tests find it (tools/caffe_cuda.sh --print): one lookup
for tests/test_cuda_build.py and tests/test_gpu_bundle.py, which skip where it is not built."""
from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(cmd, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """Run from the repository; Caffe is the default one (the CPU build) unless env says."""
    base = {k: v for k, v in os.environ.items() if k != "FETAL_CAFFE_PREFIX"}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **env})


def explain(proc: subprocess.CompletedProcess) -> str:
    """A failed command with the end of its output, for an assertion's message."""
    return f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"


def prefix() -> pathlib.Path:
    """The CUDA build's prefix in the cache, or skip the test saying how to build it."""
    proc = run(["bash", ROOT / "tools/caffe_cuda.sh", "--print"])
    assert proc.returncode == 0, explain(proc)
    path = pathlib.Path(proc.stdout.strip())
    if not (path / "bin/caffe").is_file():
        pytest.skip(f"no CUDA build of Caffe at {path}: `make test-gpu-build` builds it and the bundle "
                    "(28 CPU-minutes; 30-44 min wall on 2 busy shared cores)")
    return path
