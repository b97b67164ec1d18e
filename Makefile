# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test slow gpu-check lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "torch==2.13.0"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test,dagster]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/catalogue-tagger demo

test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest tests -m "not slow"

# long fault-injection trials and scale benchmarks (figures in the README's "Reliability"); not part of CI
slow: $(STAMP)
	$(BIN)/python -m pytest tests -m slow -s

# One command on a fresh GPU machine (at most 8 minutes): tests/gpu, decode ceiling, inference per model x backend x
# precision, end-to-end tag; one JSON + log under $OUT, else ./gpu-check/. Runs with the venv when there is one,
# else the machine's python3 (its packages: benchmarks/gpu_wheels.sh). Arguments: GPU_CHECK_ARGS="--device cuda:1".
CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(CHECK_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
