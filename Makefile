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

.PHONY: help venv system-deps openclaw-deps demo test test-fast test-backends lint bench migrate clean stack

# Tests that need neither Chromium nor OpenClaw: the edit-and-test loop.
FAST := -m "not browser and not openclaw and not postgres_only"
# The folders that also run on PostgreSQL and Redis (stack/with_backends.py).
BACKEND_TESTS := tests/ingest tests/live tests/actions tests/api tests/audit tests/retention tests/bridges/test_leases.py tests/observability

help:
	@echo "make demo       set up and start Runboard with a simulated gateway on http://127.0.0.1:8000"
	@echo "make test       set up and run the whole test suite (SQLite, then PostgreSQL and Redis)"
	@echo "make test-fast  the tests that need neither Chromium nor OpenClaw (a few minutes)"
	@echo "make bench  run the benchmarks (JSON lines on stdout)"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml
	@test -n "$(BASE_PYTHON)" || { echo "error: Python >= 3.12 not found (install it with pyenv)" >&2; exit 1; }
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The demo's own secret key, made once; a deployment sets RUNBOARD_SECRET_KEY(_FILE).
DEMO_KEY := var/secret_key
KEY_ENV := $(if $(RUNBOARD_SECRET_KEY)$(RUNBOARD_SECRET_KEY_FILE),,RUNBOARD_SECRET_KEY_FILE=$(DEMO_KEY))

$(DEMO_KEY):
	@mkdir -p $(dir $@) && umask 077 && $(BASE_PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

migrate: venv $(DEMO_KEY)
	$(KEY_ENV) $(PY) manage.py migrate --noinput

demo: migrate
	$(KEY_ENV) $(PY) manage.py demo_users
	$(KEY_ENV) $(PY) manage.py demo

# Debian's Chromium drives the browser tests (Playwright's own browser download
# cannot work here, so it is launched with executable_path); PostgreSQL and
# Redis are the production backends test-backends runs on; nginx checks the
# deployment's site (tests/deploy), Prometheus scrapes /metrics in a test.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql-15"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages the tests need:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "error: missing Debian packages:$$missing (apt-get install$$missing, as root)" >&2; \
	    exit 1; \
	  fi; \
	fi

# Node 24 and the pinned OpenClaw releases, into a cache folder outside the
# clone that later runs and clones reuse (tests/openclaw/install.py).
openclaw-deps: venv
	$(PY) -m tests.openclaw.install

test: venv system-deps openclaw-deps
	$(PY) -m pytest -m "not postgres_only"
	$(MAKE) --no-print-directory test-backends

test-fast: venv
	$(PY) -m pytest $(FAST)

# The store, ingest, live, actions, API, audit, retention, lease and
# observability tests again, on a fresh
# PostgreSQL 15 and Redis 7 started on loopback in a temporary folder.
test-backends: venv system-deps
	$(PY) -m stack.with_backends -- $(PY) -m pytest -m "not embedded_only and not browser and not openclaw" $(BACKEND_TESTS)

lint: venv $(DEMO_KEY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(KEY_ENV) $(VENV)/bin/mypy adminpanel gateway_bridge runboard simgateway stack

bench: venv system-deps $(DEMO_KEY)
	$(KEY_ENV) $(PY) -m bench

clean:
	rm -rf $(VENV) var

# The production shape on one machine: PostgreSQL, Redis, two web workers
# (RUNBOARD_STACK_PORTS), two bridges sharing the gateways, the demo's workload.
stack: venv system-deps
	$(PY) -m stack
