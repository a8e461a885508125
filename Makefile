# Every target creates the virtual environment when it is missing, so each command below is
# the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
RESULTS ?= results
ARGS ?=

.PHONY: setup test qm9 tables reproduce-table clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# Unit and integration tests on CPU; real-data tests read the samples named by MTL_SHARED_DATA.
test: setup
	$(PY) -m pytest -q $(ARGS)

# Main job: LS on real QM9 molecules from the qm9pack package (CPU profile), then the table.
qm9: setup
	$(PY) -m benchmarks.train dataset=qm9 method=ls seed=0 profile=$(PROFILE) results_dir=$(RESULTS) $(ARGS)
	$(PY) -m benchmarks.tables --results $(RESULTS) --dataset qm9

tables: setup
	$(PY) -m benchmarks.tables --results $(RESULTS)

# The comparison grid (datasets x methods x COST off/on x seeds), then tables and plots.
reproduce-table: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PROFILE=$(PROFILE) RESULTS=$(RESULTS) bash benchmarks/scripts/reproduce_table.sh $(ARGS)
