# RecStack developer commands. `make demo` and `make test` are the README's two commands.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast test-slow test-image check bench bench-serve clean \
	image kind-up kind-deploy kind-smoke kind-down

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

## setup: create .venv with the whole stack (about 3 minutes the first time)
setup: $(VENV)/.installed

## demo: synthetic data -> features -> Feast apply + materialize -> online reads
##       -> training -> recommendations -> evaluation report -> serve, collect, consume
##       -> an event changes a user's next answer -> simulated sessions -> online A/B report
demo: setup
	$(BIN)/recstack demo --out demo-data

## check: lint, types, import layering
check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: checks, then the default test suite (needs Redis and PostgreSQL; .ci/run starts them)
test: check
	$(BIN)/pytest

## test-fast: unit tests only, no services
test-fast: setup
	$(BIN)/pytest -m 'not integration and not slow'

## test-slow: the long suites kept out of the default run
test-slow: setup
	$(BIN)/pytest -m slow

## test-image: build the image with the local Docker engine, then run serve, collect and
##             --help inside it (minutes; kept out of `make test`)
test-image: setup
	$(BIN)/pytest -m image

## image: the RecStack image (docker/Dockerfile) for every role; IMAGE=recstack:dev by default
image:
	docker/build.sh

## kind-up, kind-deploy, kind-smoke, kind-down: the whole platform on a local kind cluster
##   (needs Docker and kind: a laptop or GitHub Actions; see k8s/README.md)
kind-up:
	k8s/kind.sh up
kind-deploy:
	k8s/kind.sh deploy
kind-smoke:
	k8s/kind.sh smoke
kind-down:
	k8s/kind.sh down

## bench: feature store benchmark (10k users, 5k items) -> BENCHMARKS.md figures
bench: setup
	$(BIN)/python benchmarks/feature_store.py

## bench-serve: serving load test against same-run no-op floors -> BENCHMARKS.md
bench-serve: setup
	$(BIN)/python benchmarks/serve_load.py --users 5000 --items 10000 --cached

clean:
	rm -rf demo-data .pytest_cache .mypy_cache .ruff_cache
