# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv (Python 3.11) from requirements + constraints.txt when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-reconcile test lint stack ui e2e bench bench-extract bench-convert bench-load bench-email bench-hook constraints clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11+ is required: set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

## The migration DAG end to end on the local stack (moto, Avnology emulator, SMTP sink), with dag.test().
demo: venv
	$(BIN)/python -m scripts.demo

## After `make demo`: change users in Cognito and run the daily reconciliation.
demo-reconcile: venv
	$(BIN)/python -m scripts.demo --reconcile

## Lint, then every test. PostgreSQL tests skip without a server unless REQUIRE_POSTGRES=1.
test: venv
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

## The local stack in the foreground, seeded, for a person to poke at (connections in var/stack.env).
stack: venv
	$(BIN)/python -m emulators.stack

## Airflow standalone against the local stack: the UI on http://localhost:8080 with both DAGs.
ui: venv
	$(BIN)/python -m scripts.ui

e2e: venv
	$(BIN)/python -m scripts.e2e

bench: bench-extract bench-convert bench-load bench-email bench-hook

bench-extract: venv
	$(BIN)/python bench/bench_extract.py

bench-convert: venv
	$(BIN)/python bench/bench_convert.py

bench-load: venv
	$(BIN)/python bench/bench_load.py

bench-email: venv
	$(BIN)/python bench/bench_email.py

bench-hook: venv
	$(BIN)/python bench/bench_hook.py

## Re-freeze constraints.txt from the current venv (after a passing `make test`).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf var .pytest_cache .ruff_cache
