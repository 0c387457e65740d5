# Two commands for a fresh machine (Python 3.11 and make):
#   make reproduce   the whole notebook chain on the embedded synthetic benchmark (laptop profile, CPU)
#   make test        the test suite (pytest + nbval on the smoke profile)
# Each creates or updates the local virtual environment .venv first.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= laptop
# The dataset of `make reproduce`: synthetic (embedded, no download), or cuhk / dut / folder with DATA_ROOT=DIR.
DATASET ?= synthetic
DATA_ROOT ?=
STAMP := $(VENV)/.mdbd-installed
# The real CUHK/DUT pieces, when a folder laid out like ../shared/data (cuhk-full/, dut-samples/, published-maps/)
# sits beside the repository.
export MDBD_SHARED_DATA ?= $(if $(wildcard ../shared/data/cuhk-full),$(abspath ../shared/data),)

.PHONY: install reproduce test lab bench

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	@touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(VENV)/bin/mdbd weights fetch --source oxford
	$(VENV)/bin/mdbd reproduce --profile $(PROFILE) --dataset $(DATASET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

# nbval runs papermill's smoke-parameterised copies of the notebooks (lax: every cell must run without error), then the
# unit tests, which also check the tables that chain wrote under results/smoke/.
NBVAL_DIR := build/nbval-smoke
test: $(STAMP)
	$(VENV)/bin/mdbd weights fetch --source oxford
	rm -rf $(NBVAL_DIR) && $(VENV)/bin/mdbd reproduce --profile smoke --prepare-only --out $(NBVAL_DIR)
	$(PY) -m pytest $(NBVAL_DIR) tests --nbval-lax -p no:cacheprovider

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name mdbd --display-name "Python (mdbd)"
	cd notebooks && ../$(VENV)/bin/jupyter lab

bench: $(STAMP)
	$(VENV)/bin/mdbd bench --quick
