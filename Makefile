# BN-ML. `make help` lists the targets. Every target creates the virtualenv first if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration test-faults bench lint fmt contracts status clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its test tools

run: $(STAMP) ## start the whole suite locally in paper mode (embedded NATS + Postgres unless configured)
	$(VENV)/bin/bnml up

test: $(STAMP) ## run the whole test suite (unit, integration, faults)
	$(PY) -m pytest -q

test-unit: $(STAMP) ## unit tests only (fast)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) ## integration tests only
	$(PY) -m pytest -q tests/integration

test-faults: $(STAMP) ## fault tests only
	$(PY) -m pytest -q tests/faults

bench: $(STAMP) ## run the benchmarks; prints a table and writes bench/results/latest.json
	$(PY) -m bench

lint: $(STAMP) ## ruff lint
	$(VENV)/bin/ruff check libs services bnml scripts tests bench backtest

fmt: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff check --fix libs services bnml scripts tests bench backtest
	$(VENV)/bin/ruff format libs services bnml scripts tests bench backtest

contracts: $(STAMP) ## print the JSON Schema of every bus message
	$(VENV)/bin/bnml contracts

status: $(STAMP) ## state of the running suite
	$(VENV)/bin/bnml status

clean: ## remove the virtualenv and local run state (keeps artifacts/models)
	rm -rf $(VENV) artifacts/run artifacts/logs .pytest_cache
