# Two commands on a fresh machine: `make demo` runs GAL on the bundled default, `make test` runs the tests
# (`make test-fast`: the fast tier, for every edit).
# Both build .venv/ first. torch 2.13.0 (CPU build) goes in before the rest, so that `torch>=2.4` in
# pyproject.toml does not pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := .demo

.PHONY: demo test test-fast venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# GAL on the bundled miniature world (a held-out style), evaluated per round and reported in
# .demo/run/report.html. Without the bundled weights, `gal demo` says how to train them.
demo: venv
	rm -rf $(DEMO)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(VENV)/bin/gal demo --out $(DEMO)/run

test: venv
	$(VENV)/bin/ruff check gal tests benchmarks fixtures
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist worksteal  # two workers (most tests run one torch thread), an idle one takes over queued tests

# The tests not marked slow: every module's contract, one SD run end to end, one kill and resume (tests/conftest.py).
test-fast: venv
	$(VENV)/bin/ruff check gal tests benchmarks fixtures
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist worksteal -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
