# The two commands of the README. Both install what is missing first (tools/bootstrap.sh).
.PHONY: demo test bootstrap

export OPENBLAS_NUM_THREADS ?= 1
PY := .venv/bin/python

demo: bootstrap
	$(PY) tools/demo.py

test: bootstrap
	$(PY) -m pytest -q tests

bootstrap:
	@tools/bootstrap.sh
