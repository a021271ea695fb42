# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs, runs the showcase on the bundled data
#   make test   the same set-up (with the dev extras), then the whole test suite
# `make bench` installs the peers (backtesting.py, vectorbt) into .venv and runs the benchmarks.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?= -n 2
# the example plugin package: installed with the dev extras, so its entry point is real
# when tests/test_example_plugin.py runs
EXAMPLE := examples/metaflow-nb-rsi

.PHONY: demo test bench venv install install-dev install-bench browser clean clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(BIN)/python

# stamps re-run the install only when pyproject.toml changes
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(EXAMPLE)/pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev,dask]"
	$(PIP) install --quiet --no-deps -e $(EXAMPLE)
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml $(EXAMPLE)/pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev,dask,bench]"
	$(PIP) install --quiet --no-deps -e $(EXAMPLE)
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-bench: $(VENV)/.installed-bench

# Debian's Chromium for the real-browser tests (root only; skipped tests say why otherwise)
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; fi

demo: install
	$(BIN)/python -m metaflow_nb.demo

test: install-dev browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-bench
	$(BIN)/python benchmarks/parity.py --json benchmarks/results/parity.json
	$(BIN)/python benchmarks/portfolio_parity.py --json benchmarks/results/portfolio_parity.json
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

# compiled kernels live in ~/.cache/metaflow-nb/numba (or $METAFLOW_NB_CACHE_DIR)
clean-cache:
	rm -rf "$${METAFLOW_NB_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/metaflow-nb/numba}"
