# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test slow lint typecheck clean

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
