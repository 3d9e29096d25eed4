# The two commands of the README. Both install what is missing first (tools/bootstrap.sh).
# The CUDA build (docs/docker-gpu.md): `make caffe-cuda` builds Caffe for GPUs from NVIDIA's
# PyPI toolchain (no GPU needed), `make test-gpu-build` builds it and checks what can be checked
# without a GPU, `make gpu-check` runs it on a machine with a GPU.
.PHONY: demo test bootstrap caffe-cuda test-gpu-build gpu-check

export OPENBLAS_NUM_THREADS ?= 1
PY := .venv/bin/python

demo: bootstrap
	$(PY) tools/demo.py

test: bootstrap
	$(PY) -m pytest -q tests

bootstrap:
	@tools/bootstrap.sh

caffe-cuda: bootstrap
	@tools/caffe_cuda.sh

test-gpu-build: caffe-cuda
	$(PY) -m pytest -q tests/test_cuda_build.py
	FETAL_BUILD_GPU_IMAGE=1 $(PY) -m pytest -q tests/test_docker.py -k gpu_image

gpu-check: caffe-cuda
	tools/gpu_check.sh
