# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck clean

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
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
