# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each builds the project's own virtualenv (.venv) from pyproject.toml first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PREFECT_HOME ?= $(CURDIR)/.clarion/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: demo test lint typecheck pytest install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/clarion validate examples/debate-night/campaign.yaml examples/b2b-cta-test/campaign.yaml
	$(BIN)/clarion preview examples/debate-night/campaign.yaml --contact sup-000002
	$(BIN)/clarion run examples/debate-night/campaign.yaml --sandbox

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .clarion .mypy_cache .ruff_cache .pytest_cache
