# The two commands of the README. Both install what is missing first (tools/bootstrap.sh).
# The CUDA build (docs/docker-gpu.md): `make caffe-cuda` builds Caffe for GPUs from NVIDIA's
# PyPI toolchain (no GPU needed), `make gpu-bundle` packs it into a tarball of <= 40 MiB for a
# GPU machine that has CUDA 13 (PyTorch's wheels), `make gpu-check-data` cuts the small LMDBs
# that travel with it, `make test-gpu-build` builds all that and checks what can be checked
# without a GPU, `make gpu-check` runs tools/gpu_check.sh (on a GPU machine: see its --help).
.PHONY: demo test bootstrap caffe-cuda gpu-bundle gpu-check-data test-gpu-build gpu-check

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

gpu-bundle: caffe-cuda
	@tools/gpu_bundle.sh

gpu-check-data: bootstrap
	$(PY) tools/gpu_check_data.py --overwrite

test-gpu-build: gpu-bundle
	$(PY) -m pytest -q tests/test_cuda_build.py tests/test_gpu_bundle.py
	FETAL_BUILD_GPU_IMAGE=1 $(PY) -m pytest -q tests/test_docker.py -k gpu_image

gpu-check: gpu-bundle gpu-check-data
	tools/gpu_check.sh
