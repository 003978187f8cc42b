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

# Python 3.12, the other Functions runtime the app supports (README "Supported Python"): after the whole suite
# on $(PYTHON), `make test` runs the unit and integration tiers again on 3.12 in $(VENV312). The interpreter is
# the newest pyenv 3.12, else python3.12 on PATH; PYTHON312=/path/to/python overrides. None found: a printed
# skip locally, a failure when REQUIRE_PYTHON312 (default: the CI variable) is set; skipped when VENV is the 3.12 one.
PYENV_ROOT ?= $(HOME)/.pyenv
ifeq ($(origin PYTHON312),undefined)
PYTHON312 := $(or $(shell ls -d $(PYENV_ROOT)/versions/3.12*/bin/python 2>/dev/null | sort -V | tail -n 1),$(shell command -v python3.12 2>/dev/null))
endif
VENV312 ?= .venv312
REQUIRE_PYTHON312 ?= $(CI)

test: setup
	$(PY) -m pytest
ifneq ($(VENV),$(VENV312))
ifeq ($(PYTHON312),)
ifneq ($(REQUIRE_PYTHON312),)
	@echo "make test: no Python 3.12 interpreter found (set PYTHON312=/path/to/python3.12)" >&2; exit 1
else
	@echo "make test: SKIPPED the Python 3.12 stage (unit + integration): no python3.12 found;" \
	  "set PYTHON312=/path/to/python3.12 to run it"
endif
else
	@echo "make test: Python 3.12 stage (unit + integration) with $(PYTHON312) in $(VENV312)"
	$(MAKE) --no-print-directory setup PYTHON="$(PYTHON312)" VENV=$(VENV312)
	$(VENV312)/bin/python -m pytest tests/unit tests/integration
endif
endif

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_cycles.py
	$(PY) infra/check.py

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(VENV312) .venv-iac node_modules .state bench/out local.settings.json
