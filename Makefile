# The two commands a newcomer needs: `make run` and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test quick install system-deps lint typecheck unit test-pg bench bench-db chaos fuzz soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo]'
	touch $(STAMP)

NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

## Start the broker on its embedded demo defaults (or ARGS="--config broker.toml").
run: install
	$(BIN)/broker serve $(ARGS)

## Install everything the tests need, then lint, type-check and run every test.
test: system-deps install lint typecheck unit

## Debian packages the tests need (Chromium, PostgreSQL client, Node.js), when missing.
system-deps:
	bash scripts/install-system-deps.sh

## The quick loop while working: every test but the slow ones (soak, chaos, fuzz...).
quick: install
	$(BIN)/python -m pytest -q -m "not slow"

LINTED := broker tunnels protocols scripts benchmarks

## ruff, and the layering rules in .importlinter (core never imports the web edge, ...).
lint: install
	$(BIN)/ruff check $(LINTED) tests
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q

## The database tests again on PostgreSQL, in a fresh database created and dropped here.
test-pg: install
	bash .ci/postgres-tests

## Benchmarks (scripts that print numbers): codec throughput, then the relay side by side
## with guacamole-lite and raw TCP: full speed, capture pace, connect storm, RSS (about
## 6 minutes; ARGS=--quick: about a minute). Not part of `make test`.
bench: install
	$(BIN)/python -m benchmarks.codec_bench
	$(BIN)/python -m benchmarks.relay $(ARGS)

## What history costs: routes, idle work and query plans at 0 and at 1M (PostgreSQL)
## / 100k (SQLite) seeded sessions, in databases made and dropped here (ARGS= to change).
bench-db: install
	$(BIN)/python -m benchmarks.db $(ARGS)

## The full chaos run: a broker killed 50 times under load, then every invariant checked.
chaos: install
	$(BIN)/python -m scripts.chaos --kills 50

## Schema fuzzing of /api with schemathesis: 1000+ requests, zero 5xx, zero schema violations.
fuzz: install
	$(BIN)/python -m scripts.fuzz_api --requests $(or $(REQUESTS),1000)

## Soak: 200 viewer streams plus steady launches and disconnects for 10 minutes;
## checks errors, RSS, file descriptors and asyncio tasks (STREAMS=, MINUTES= to change).
soak: install
	$(BIN)/python -m scripts.soak --streams $(or $(STREAMS),200) --minutes $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache
