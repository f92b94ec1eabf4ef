# Jaga: `make demo` runs the pipeline on this machine, `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBS := mosquitto mosquitto-clients influxdb
# systemd: systemd-analyze (unit hardening scores) and systemctl --root (install-script tests).
TEST_DEBS := victoria-metrics systemd chromium
DEMO_SECONDS ?= 60

.PHONY: setup debs venv demo test lint typecheck check bench soak rehearse i18n clean

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

# The suite on TEST_WORKERS pytest-xdist workers, a test module at a time per worker (its
# module-scoped servers stay on one worker; tests/conftest.py, devstack/ports.py), then the
# tests marked `serial` alone. TEST_WORKERS=0: the first part too in this one process.
TEST_WORKERS ?= 4
test: setup
	@status=0; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" tests || status=$$?; \
	$(PY) -m pytest -q -m serial tests || status=$$?; \
	exit $$status

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

# Gettext catalogs (broker/i18n.py says how to mark strings): extract every marked string,
# merge them into broker/locale/<lang>/LC_MESSAGES/jaga.po, show what is left to translate.
# Translate the new (empty or fuzzy) entries; tests/unit/test_i18n.py fails until they are.
# The .po is what ships: broker/i18n.py compiles it with Babel when the collector starts.
i18n: venv
	@$(VENV)/bin/pybabel -q extract -F babel.cfg -k N_ --no-location --sort-output \
		--project jaga -o $(VENV)/jaga.pot .
	@$(VENV)/bin/pybabel -q update -i $(VENV)/jaga.pot -d broker/locale -D jaga \
		--ignore-obsolete --no-wrap
	@$(VENV)/bin/pybabel compile --statistics -d broker/locale -D jaga -o /dev/null -l id \
		-i broker/locale/id/LC_MESSAGES/jaga.po

lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: venv
	@$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) run build *.egg-info
