# Two commands for a fresh machine (Python 3.11 and make):
#   make reproduce   the whole notebook chain on the embedded synthetic benchmark (laptop profile, CPU)
#   make test        the test suite (ruff, then pytest + nbval on the smoke profile)
# Each creates or updates the local virtual environment .venv first.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= laptop
# The dataset of `make reproduce`: synthetic (embedded, no download), or cuhk / dut / folder with DATA_ROOT=DIR.
DATASET ?= synthetic
DATA_ROOT ?=
# EXTRAS=1: after the chain, also the notebooks outside it (08_cuhk_te1: CUHK-TE-1 under D-DFFNet's protocol)
EXTRAS ?=
STAMP := $(VENV)/.mdbd-installed
# The real CUHK/DUT pieces: $MDBD_SHARED_DATA, or, left unset, a folder laid out like ../shared/data (cuhk-full/,
# dut-samples/, published-maps/) beside the repository, found by mdbd itself (mdbd.core.paths.DEFAULT_SHARED_DATA) for make
# and a bare mdbd command alike.

.PHONY: install reproduce test nbval-refs lab bench report report-check

# pymatting (LBP's matting step) compiles its numba kernels when first imported and caches them in the venv: once at
# install, instead of in each worker process of the first LBP run (both compiled at once in the real chain's 04,
# about 1.5 min of it on a slow 2-core machine: docs/results.md, "Time").
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	$(PY) -c "import pymatting"
	@touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(VENV)/bin/mdbd weights fetch --source oxford
	$(VENV)/bin/mdbd reproduce --profile $(PROFILE) --dataset $(DATASET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(EXTRAS),--extras)

# The report of a results folder (`mdbd reproduce` writes it at the end of a chain): REPORT.md and report.html in
# results/$(PROFILE)/$(REPORT_DATASET)/, from the tables and figures on disk. REPORT_DATASET is the folder's label
# (cuhk: the tracked real reference set; synthetic-cuhkmasks: the synthetic demo's).
REPORT_DATASET ?= cuhk
report: $(STAMP)
	$(VENV)/bin/mdbd report --profile $(PROFILE) --dataset $(REPORT_DATASET)

# The same report checked in a real browser, run by the team (not by `make test`: CI machines may lack Chromium;
# Debian: apt-get install chromium). Rewrites the report, opens report.html in headless Chromium and fails unless
# every figure loads (the page counts them itself) and the page renders (a screenshot that is not blank, left in
# build/report-check/ to look at); then the browser tests of tests/test_report_md.py, which skip without Chromium.
report-check: $(STAMP)
	$(VENV)/bin/mdbd report --profile $(PROFILE) --dataset $(REPORT_DATASET) --check-browser
	$(PY) -m pytest tests/test_report_md.py -k browser -p no:cacheprovider

# nbval re-runs the reference copies of the notebooks in tests/nbval/ (smoke profile, executed by `make nbval-refs`)
# and compares every output that is not tagged nbval-ignore-output, times, paths and versions sanitised
# (tests/nbval/sanitize.cfg), printed decimals to a tolerance (below): a change that alters a printed result fails.
# Both run the chain in the same fresh, private state: no MDBD_SHARED_DATA (procedural masks on every machine), data
# and results folders of their own, wiped first (every run trained, none reused), two CPU threads. Then the unit
# tests, which also check the tables that run wrote (MDBD_CHAIN_RESULTS) and that the references still hold the
# notebooks' cells.
NBVAL_STATE := build/nbval-state
# The CPU kernels are not pinned: another CPU (AVX-512, ARM, one without AVX2) picks other float kernels whose last
# digits differ (5.4091e-01 for 5.4083e-01), so printed decimals are compared to a stated tolerance instead (half a
# unit of the third significant digit, or one unit of the last digit printed; tests/nbval/conftest.py,
# mdbd/chain/nbval_tolerance.py), everything else exactly. (The references were once compared digit for digit, which held
# only with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 on an x86 CPU.)
NBVAL_ENV := MDBD_SHARED_DATA= MDBD_DATA_DIR=$(abspath $(NBVAL_STATE))/data \
	MDBD_RESULTS_DIR=$(abspath $(NBVAL_STATE))/results OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
NBVAL_FRESH_STATE := rm -rf $(NBVAL_STATE) && mkdir -p $(NBVAL_STATE)/data \
	&& ln -s $(abspath data/weights) $(NBVAL_STATE)/data/weights
# ruff first (pyproject.toml's [tool.ruff]; the test extra installs it): a lint error fails before the long tests.
test: $(STAMP)
	$(VENV)/bin/ruff check mdbd scripts tests notebooks
	$(VENV)/bin/mdbd weights fetch --source oxford
	$(NBVAL_FRESH_STATE)
	$(NBVAL_ENV) $(PY) -m pytest tests/nbval --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval/sanitize.cfg -p no:cacheprovider
	MDBD_CHAIN_RESULTS=$(abspath $(NBVAL_STATE))/results/smoke/synthetic-proceduralmasks \
		$(PY) -m pytest tests -p no:cacheprovider

# Regenerate the nbval references (after a change to a notebook, or one that alters its printed results on purpose).
nbval-refs: $(STAMP)
	$(VENV)/bin/mdbd weights fetch --source oxford
	$(NBVAL_FRESH_STATE)
	$(NBVAL_ENV) $(PY) -m mdbd.chain.notebook_refs write

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name mdbd --display-name "Python (mdbd)"
	cd notebooks && ../$(VENV)/bin/jupyter lab

bench: $(STAMP)
	$(VENV)/bin/mdbd bench --quick
