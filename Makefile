# The targets the README, pre-commit and .ci/run call. Everything installs into $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test test-slow bench bench-tabular bench-trees bench-instructions bench-mlserver lint typecheck unit install install-dev clean

# Installing and starting go through scripts/bootstrap, which the Dockerfile calls too.
BOOTSTRAP := VENV=$(VENV) PYTHON=$(PYTHON) scripts/bootstrap
STAMP_RAY := $(VENV)/.installed-ray

$(STAMP_RUN): pyproject.toml scripts/bootstrap
	$(BOOTSTRAP) install
	touch $@

$(STAMP_DEV): pyproject.toml scripts/bootstrap
	$(BOOTSTRAP) install dev
	touch $@ $(STAMP_RUN)

$(STAMP_RAY): $(STAMP_DEV)
	$(BOOTSTRAP) install dev ray
	touch $@

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

## run: serve every model in the store on http://127.0.0.1:8000 (ARGS="--port 9000" for flags),
##      training `default` first if the store is empty
run: $(STAMP_RUN)
	$(BOOTSTRAP) serve $(ARGS)

## test: ruff, the layers contract (import-linter), mypy (strict) and the whole pytest suite
test: lint typecheck unit

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

typecheck: $(STAMP_DEV)
	$(BIN)/mypy src

unit: $(STAMP_DEV)
	$(BIN)/pytest -m "not slow"

## test-slow: the long tests (soak, Ray Serve); .ci/run runs them after `make test`
test-slow: $(STAMP_RAY)
	$(BIN)/pytest -m slow -s

## bench: ceiling vs tutorial FastAPI app vs modelserve (wrk, pinned cores) -> bench/RESULTS.md
bench: $(STAMP_DEV)
	command -v wrk >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)
	command -v taskset >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y util-linux)
	$(BIN)/python bench/run.py

## bench-tabular: the penguins pipeline (mixed types) beside the linear model, micro-batching on
##                 and off -> its section of bench/RESULTS.md
bench-tabular: $(STAMP_DEV)
	command -v wrk >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)
	command -v taskset >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y util-linux)
	$(BIN)/python bench/tabular.py

## bench-trees: a random forest, hist gradient boosting and the penguins pipeline, compiled
##              forms on and off (MLSERVER_BIN=... adds MLServer) -> its section of RESULTS.md
bench-trees: $(STAMP_DEV)
	command -v wrk >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)
	command -v taskset >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y util-linux)
	$(BIN)/python bench/trees.py

## bench-instructions: server instructions per one-row request, ceiling vs modelserve (callgrind)
bench-instructions: $(STAMP_DEV)
	command -v valgrind >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind)
	$(BIN)/python bench/instructions.py

## bench-mlserver: bench and bench-trees, with MLServer 1.7.1 (sklearn runtime, in its own venv)
##                 added to their tables
MLSERVER_VENV ?= .venv-mlserver
bench-mlserver: $(STAMP_DEV)
	test -x $(MLSERVER_VENV)/bin/mlserver || ($(PYTHON) -m venv $(MLSERVER_VENV) && \
	  $(MLSERVER_VENV)/bin/pip install -q mlserver==1.7.1 mlserver-sklearn==1.7.1 \
	  "scikit-learn==$$($(BIN)/python -c 'import sklearn; print(sklearn.__version__)')")
	MLSERVER_BIN=$(MLSERVER_VENV)/bin/mlserver $(MAKE) bench bench-trees

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
