# voltpipe developer commands. Everything installs itself into .venv on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INFRA_VENV := .venv-infra
BENCH_VENV := .venv-bench
PIP_FLAGS := --disable-pip-version-check --quiet
export VOLTPIPE_INFRA_BIN := $(CURDIR)/$(INFRA_VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-fast lint typecheck bench lock clean help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

$(INFRA_VENV)/.installed: requirements/infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(INFRA_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/infra.txt
	touch $@

$(BENCH_VENV)/.installed: requirements/bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/bench.txt
	touch $@

demo: $(VENV)/.installed  ## Run the training pipeline on the embedded demo warehouse
	$(BIN)/voltpipe run training --summary-json .voltpipe/demo-summary.json

test: $(VENV)/.installed-test $(INFRA_VENV)/.installed  ## Run the whole test suite
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test $(INFRA_VENV)/.installed  ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed-test  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test  ## mypy on the core (voltpipe/); config in setup.cfg [mypy]
	$(BIN)/mypy

bench: $(VENV)/.installed-test $(BENCH_VENV)/.installed  ## Run the benchmarks; writes bench-results.json
	$(BIN)/python -m benchmarks --output bench-results.json

lock:  ## Re-pin the image's dependencies with their hashes (images/requirements.lock; needs the index)
	$(PYTHON) -m pip install --dry-run --ignore-installed --quiet --report .lock-report.json . 'setuptools>=69' wheel
	$(PYTHON) images/lock.py .lock-report.json
	rm -f .lock-report.json

clean:  ## Remove the work dir and build leftovers (keeps the venvs)
	rm -rf .voltpipe build dist *.egg-info .pytest_cache .ruff_cache
