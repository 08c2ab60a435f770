# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each builds the project's own virtualenv (.venv) from pyproject.toml first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PREFECT_HOME ?= $(CURDIR)/.clarion/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: demo test lint typecheck pytest install bytecode clean browser axe fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# Clarion's own modules compiled once, as pip compiles an installed package's. An editable install leaves
# that to each import, which writes nothing where PYTHONDONTWRITEBYTECODE is set (this machine, CI): every
# `clarion` process then compiled each module it imported, 0.4-0.5 s of its start-up. Quick when current.
bytecode:
	$(BIN)/python -m compileall -q clarion > /dev/null

install: $(STAMP)

demo: $(STAMP) bytecode
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/clarion validate examples/debate-night/campaign.yaml examples/b2b-cta-test/campaign.yaml
	$(BIN)/clarion preview examples/debate-night/campaign.yaml --contact sup-000002
	$(BIN)/clarion run examples/debate-night/campaign.yaml --sandbox --engage examples/debate-night/engagement.yaml --console
	$(BIN)/clarion donations demo latest
	$(BIN)/clarion conversions import examples/debate-night/donations.csv --run latest
	$(BIN)/clarion report latest --html .clarion/debate-night-report.html
	$(BIN)/clarion report latest
	$(BIN)/clarion suppress list --limit 5
	$(BIN)/clarion validate examples/register-by-zip/responder.yaml
	$(BIN)/clarion responders test examples/register-by-zip/responder.yaml --channel sms --from +14155550100 --text "94110"
	$(BIN)/clarion responders demo examples/register-by-zip/responder.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy
	cd benchmarks && ../$(BIN)/mypy --config-file mypy.ini *.py

# Two processes, a test file each at a time (most of the suite waits on servers, sandboxes and clocks, not
# on a core): 14.5 against 26.6 minutes on two cores. PYTEST_WORKERS=0 runs it in this process. The files
# go out in collection order, the slowest first (SLOW_FILES in tests/conftest.py), not xdist's most-tests-first.
PYTEST_WORKERS ?= 2
pytest: $(STAMP) bytecode browser axe
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Headless Chromium renders the HTML report in its test. Installed with apt-get when missing and this user
# may (root, or passwordless sudo); otherwise the test is skipped, unless CLARION_REQUIRE_CHROMIUM is set.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "chromium not installed (and no root): the HTML report's browser test will be skipped"; exit 0; fi; \
	  echo "installing chromium for the HTML report's browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# axe-core for the console's accessibility checks in Chromium: the version and its sha512 are pinned in
# tests/console/package-lock.json, installed with npm into tests/console/node_modules (git-ignored).
axe:
	@test -f tests/console/node_modules/axe-core/axe.min.js || { \
	  if command -v npm >/dev/null 2>&1; then \
	    npm ci --prefix tests/console --no-audit --no-fund --ignore-scripts --silent; \
	  else echo "npm not installed: the console's accessibility checks will be skipped"; fi; }

test: lint typecheck pytest

# The bad-input harness for a fixed budget (FUZZ_SECONDS, default 900): prints inputs and failures per
# command, setting and endpoint. `make test` runs a short seeded version (tests/test_badinput.py).
FUZZ_SECONDS ?= 900
fuzz: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/python benchmarks/bad_input.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .clarion .mypy_cache .ruff_cache .pytest_cache tests/console/node_modules
