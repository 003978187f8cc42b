# Two commands matter: `make run` (the main job) and `make test` (the whole suite).
# Both install what they need: a virtual environment with the requirements, and Azurite from npm.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run demo test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

run: setup
	$(PY) -m devhost.stack up

demo: setup
	$(PY) -m devhost.stack up --demo

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_cycles.py
	$(PY) infra/check.py

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv312 .venv-iac node_modules .state bench/out local.settings.json
