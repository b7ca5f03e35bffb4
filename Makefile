# braid developer commands. `make quickstart` and `make test` do all the set-up themselves.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
REPO   ?= feature_repo
EVENTS ?= 200000

.PHONY: quickstart test lint typecheck unit install install-dev clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Core install: DuckDB + SQLite, no servers.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

# Everything the tests use: Redis client, Kafka clients + Tansu broker, PyFlink, server, Feast,
# and headless Chromium from Debian for the web page tests (never `playwright install`).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,dev]'
	@command -v chromium >/dev/null 2>&1 || command -v apt-get >/dev/null 2>&1 && \
	  { command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium chromium-driver \
	    >/dev/null 2>&1 || echo "note: could not install chromium; browser tests will skip"; }
	@touch $@ $(VENV)/.core

install: $(VENV)/.core
install-dev: $(VENV)/.dev

quickstart: $(VENV)/.core
	BIN=$(BIN) REPO=$(REPO) EVENTS=$(EVENTS) bash scripts/quickstart.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check sdk batch streaming tests bench feature_repo

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	$(BIN)/pytest tests/unit tests/golden -q

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(REPO)/data build .pytest_cache .mypy_cache .ruff_cache
