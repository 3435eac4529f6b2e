# Two commands for a fresh machine (see README): `make run` and `make test`.
# Both set themselves up: system packages, a venv at .venv/ with the pinned requirements.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bootstrap bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the pinned CPU build (a later unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	# the project itself, editable: the `studio` command, and benches run as `python -m bench.X`
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	bash scripts/system-deps.sh run
	$(BIN)/python -m backend bootstrap
	$(BIN)/python -m app

bootstrap: $(STAMP)
	bash scripts/system-deps.sh run
	$(BIN)/python -m backend bootstrap

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	bash scripts/system-deps.sh test
	$(BIN)/ruff check .
	# known vulnerabilities of the pinned requirements (fails on a finding outside
	# scripts/audit-allowlist.toml; an unreachable index is printed, not failed)
	$(BIN)/python scripts/audit.py --offline-ok
	$(BIN)/python -m tests.mini_world
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$$(bash scripts/test-postgres.sh)}" \
		$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in bench/[a-z]*.py; do m=$$(basename $$b .py); echo "== bench.$$m"; \
		$(BIN)/python -m bench.$$m || exit 1; done

clean-venv:
	rm -rf $(VENV)
