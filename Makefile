# The two commands in the README are the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# two test processes (pytest-xdist), a test file each at a time: the suite waits on servers and
# subprocesses as much as it computes, so two halve it on two cores (31 -> 12 min here); TEST_WORKERS=0 runs it in one
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
RUFF_TARGETS := spendlog db dashboard migrations tests bench
# setuptools says in a box that an editable install maps the spendlog.db / .dashboard / .migrations
# packages to folders of other names (pyproject's package-dir): expected here, so not shown
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: help venv demo lint test test-fast soak bench dashboard clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	@echo "Installing spendlog with its test extra into $(VENV) (takes a few minutes the first time)..."
	$(QUIET_EDITABLE) $(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml
	@echo "Installing spendlog and what the demo needs into $(VENV) (takes a minute or two the first time)..."
	$(QUIET_EDITABLE) $(BIN)/pip install --quiet -e ".[demo]"
	touch $(DEMO_STAMP)

venv: $(STAMP)  ## Create .venv and install spendlog with its test extra

demo: $(DEMO_STAMP)  ## Run the dashboard on live demo data (Ctrl+C stops)
	$(BIN)/spendlog demo

lint: $(STAMP)  ## Check the code with ruff (configured in pyproject.toml)
	$(BIN)/ruff check $(RUFF_TARGETS)

test: lint  ## Run ruff, then the whole test suite
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)  ## Run the suite without the slow tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)  ## Run every benchmark in bench/ and print a table
	$(BIN)/python bench/run_all.py

dashboard: $(STAMP)  ## Open the dashboard on your own ledger
	$(BIN)/spendlog dashboard

clean:  ## Remove the virtualenv and build output
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
