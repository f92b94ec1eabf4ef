# Jaga: `make demo` runs the pipeline on this machine, `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBS := mosquitto mosquitto-clients influxdb
# systemd: systemd-analyze (unit hardening scores) and systemctl --root (install-script tests).
TEST_DEBS := victoria-metrics systemd chromium
DEMO_SECONDS ?= 60

.PHONY: setup debs venv demo test lint typecheck check bench soak rehearse clean

setup: debs venv

# Debian packages: installed when run as root, otherwise one sudo line to copy.
debs:
	@$(PYTHON) scripts/ensure_debs.py $(DEBS) $(if $(filter test,$(MAKECMDGOALS)),$(TEST_DEBS))

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: setup
	@DEMO_SECONDS=$(DEMO_SECONDS) $(PY) -m devstack.demo

test: setup
	@$(PY) -m pytest -q tests

# `make soak SOAK_MINUTES=N` (default 10): the demo fleet under random faults, ending with
# `soak: <produced> produced, <stored> stored, <lost> lost, <dup> duplicated` (devstack/soak.py).
soak: setup
	@$(PY) -m devstack.soak --minutes $(or $(SOAK_MINUTES),10)

# The README's Pi and server sections run as written on booted bookworms (root; ~4 minutes).
rehearse: setup
	@$(PY) -m devstack.rehearse

# Every benchmark (bench/), about 10 minutes: tables, bench/results/*.json, README Performance.
bench: setup
	@$(PY) -m bench.all

lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: venv
	@$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) run build *.egg-info
