# The two commands in the README are the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv demo test test-fast soak bench dashboard clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)  ## Create .venv and install spendlog with its test extra

demo: $(STAMP)  ## Run the dashboard on live demo data (Ctrl+C stops)
	$(BIN)/spendlog demo

test: $(STAMP)  ## Run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## Run the suite without the slow tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)  ## Run every benchmark in bench/ and print a table
	$(BIN)/python bench/run_all.py

dashboard: $(STAMP)  ## Open the dashboard on your own ledger
	$(BIN)/spendlog dashboard

clean:  ## Remove the virtualenv and build output
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
