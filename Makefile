# fdb-pipeline: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SERVER_VENV ?= .venv-server
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libopus0 espeak-ng sox git

.DEFAULT_GOAL := help
.PHONY: help setup system-packages venv server-env test test-unit lint typecheck bench-client clean

help: ## list the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: system-packages venv server-env ## install everything: apt packages, client venv, test server venv

system-packages: ## apt packages: libopus (codec), espeak-ng + sox (test speech)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed ## the client's venv (light: no PyTorch) with test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

server-env: ## a separate venv with the real upstream moshi server (CPU torch) for tests/demo
	bash scripts/setup-server-env.sh $(SERVER_VENV)

test: venv ## run every test (integration tests need `make setup` first; CI never skips them)
	$(PY) -m pytest -ra

test-unit: venv ## only the fast tests
	$(PY) -m pytest -ra -m "not integration and not slow"

lint: venv ## ruff + mypy --strict
	$(VENV)/bin/ruff check pipeline tests scripts containers
	$(VENV)/bin/ruff format --check pipeline tests scripts containers
	$(VENV)/bin/mypy

bench-client: venv ## client throughput and memory against a zero-cost echo server
	$(PY) scripts/bench_client.py

clean: ## remove caches (keeps the venvs)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .cache
