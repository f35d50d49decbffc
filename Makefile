# BN-ML. `make help` lists the targets. Every target creates the virtualenv first if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := deploy/requirements.lock
WHEELS := $(VENV)/wheelhouse

.DEFAULT_GOAL := help
.PHONY: help venv wheelhouse lock lock-check run test test-unit test-integration test-faults bench lint fmt fmt-check typecheck check contracts asyncapi status clean
SRC    := libs services bnml scripts tests bench backtest

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

# The runtime dependencies come from the lock, hash-checked, exactly as the image installs them; then the
# project itself, its test tools and the embedded servers (`embedded`: pgserver, not in the image).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,embedded]"
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its test tools

# The image's Python environment, offline: the locked wheels (hash-checked) for the deploy test that builds a
# clean venv from the lock and starts every service from it (tests/integration/test_deploy_stack.py).
$(WHEELS)/.done: $(LOCK) $(STAMP)
	$(PY) -m pip download --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
	  -r $(LOCK) -d $(WHEELS)
	@touch $@

wheelhouse: $(WHEELS)/.done ## download the locked wheels (what the image installs) into .venv/wheelhouse

# uv keeps the versions already in the lock unless pyproject.toml needs others (`--upgrade` to take newer ones:
# make lock LOCK_ARGS=--upgrade). --universal: one lock for x86-64 and arm64 (and the markers say which is which).
lock: $(STAMP) ## regenerate deploy/requirements.lock from pyproject.toml (hashes, every platform), then check it
	$(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet \
	  --custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)
	$(MAKE) --no-print-directory lock-check

# Needs the package index: resolves every locked file for the image's two platforms without installing anything.
lock-check: $(STAMP) ## check the lock installs on linux x86-64 and arm64 (binary wheels, hashes), and matches .venv
	@for arch in x86_64 aarch64; do \
	  $(PY) -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed --no-deps \
	    --only-binary=:all: --python-version 3.11 --implementation cp --target $(VENV)/.lock-check \
	    --platform manylinux_2_28_$$arch --platform manylinux_2_17_$$arch --platform manylinux2014_$$arch \
	    --require-hashes -r $(LOCK) >$(VENV)/.lock-check.log 2>&1 \
	  || { grep -v "^WARNING: Location" $(VENV)/.lock-check.log; echo "lock: does not install on linux $$arch"; exit 1; }; \
	  echo "lock: installs on linux $$arch"; \
	done
	$(PY) deploy/lock.py --check

run: $(STAMP) ## start the whole suite locally in paper mode (embedded NATS + Postgres unless configured)
	$(VENV)/bin/bnml up

# The suite mostly waits (servers starting, breakers timing out), so it runs on TEST_WORKERS xdist workers; each
# worker has its own Postgres and every test its own NATS and database. Tests bound to the default ports take a
# file lock (the `default_ports` fixture). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3
test: $(STAMP) $(WHEELS)/.done ## run the whole test suite (unit, integration, faults)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-unit: $(STAMP) ## unit tests only (fast)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) $(WHEELS)/.done ## integration tests only
	$(PY) -m pytest -q tests/integration

test-faults: $(STAMP) ## fault tests only
	$(PY) -m pytest -q tests/faults

bench: $(STAMP) ## run the benchmarks; prints a table and writes bench/results/latest.json
	$(PY) -m bench

lint: $(STAMP) ## ruff lint
	$(VENV)/bin/ruff check $(SRC)

fmt: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff check --fix $(SRC)
	$(VENV)/bin/ruff format $(SRC)

fmt-check: $(STAMP) ## ruff format --check (what `make fmt` would change, changing nothing)
	$(VENV)/bin/ruff format --check $(SRC)

typecheck: $(STAMP) ## mypy (configuration in pyproject.toml: strict for libs/common and the listed cores)
	$(VENV)/bin/mypy

# The habits every change keeps, in the order that fails fastest; CI runs it before `make test`, and the
# pre-commit hook (`.venv/bin/pre-commit install`, .pre-commit-config.yaml) runs the same commands.
check: lint fmt-check typecheck test-unit ## ruff check, ruff format --check, mypy, unit tests

contracts: $(STAMP) ## print the JSON Schema of every bus message
	$(VENV)/bin/bnml contracts

asyncapi: $(STAMP) ## regenerate docs/asyncapi.json (the bus as an AsyncAPI 3.0 document; a unit test checks it)
	$(VENV)/bin/bnml contracts --asyncapi > docs/asyncapi.json

status: $(STAMP) ## state of the running suite
	$(VENV)/bin/bnml status

clean: ## remove the virtualenv and local run state (keeps artifacts/models)
	rm -rf $(VENV) artifacts/run artifacts/logs .pytest_cache
