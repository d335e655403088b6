# Runboard. `make demo` and `make test` are the two commands a new machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Python >= 3.12: a .python-version file selects it under pyenv; fall back to
# the pyenv install path, then to whatever python3.12/3.13 is on PATH.
BASE_PYTHON := $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)

# Debian's Chromium drives the browser tests: Playwright's own browser download
# cannot work here, so it is launched with executable_path.
CHROMIUM := /usr/bin/chromium

.PHONY: help venv system-deps openclaw-deps demo test lint bench migrate clean

help:
	@echo "make demo   set up and start Runboard with a simulated gateway on http://127.0.0.1:8000"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  run the benchmarks (JSON lines on stdout)"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml
	@test -n "$(BASE_PYTHON)" || { echo "error: Python >= 3.12 not found (install it with pyenv)" >&2; exit 1; }
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py demo_users
	$(PY) manage.py demo

system-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: $(CHROMIUM) is missing; install Debian's chromium package (apt-get install chromium)" >&2; \
	    exit 1; \
	  fi; \
	fi

# Node 24 and the pinned OpenClaw releases, into a cache folder outside the
# clone that later runs and clones reuse (tests/openclaw/install.py).
openclaw-deps: venv
	$(PY) -m tests.openclaw.install

test: venv system-deps openclaw-deps
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy adminpanel gateway_bridge

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) var
