# The targets the README, pre-commit and .ci/run call. Everything installs into $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test test-slow bench lint typecheck unit install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

## run: serve every model in the store on http://127.0.0.1:8000 (ARGS="--port 9000" for flags),
##      training `default` first if the store is empty
run: $(STAMP_RUN)
	$(BIN)/modelserve serve $(ARGS)

## test: ruff, mypy (strict) and the whole pytest suite
test: lint typecheck unit

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP_DEV)
	$(BIN)/mypy src

unit: $(STAMP_DEV)
	$(BIN)/pytest -m "not slow"

## test-slow: the long tests (soak); .ci/run runs them after `make test`
test-slow: $(STAMP_DEV)
	$(BIN)/pytest -m slow -s

## bench: ceiling vs tutorial FastAPI app vs modelserve (wrk, pinned cores) -> bench/RESULTS.md
bench: $(STAMP_DEV)
	command -v wrk >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)
	command -v taskset >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y util-linux)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
