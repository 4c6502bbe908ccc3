# Two commands on a fresh machine: `make demo` runs GAL on the bundled default, `make test` runs the tests.
# Both build .venv/ first. torch 2.13.0 (CPU build) goes in before the rest, so that `torch>=2.4` in
# pyproject.toml does not pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := .demo

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Until the bundled miniature model lands, the demo builds a tiny random model on the spot:
# it shows the whole machinery (rounds, ledger, selections), not meaningful pictures.
demo: venv
	rm -rf $(DEMO)
	HF_HUB_OFFLINE=1 $(PY) -m gal.tiny $(DEMO)/models
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(VENV)/bin/gal run \
		--base $(DEMO)/models/pipeline --scorer $(DEMO)/models/clip \
		--references $(DEMO)/models/references --kind style \
		--subject "in <sks> style" --subject-plain "in mosaic style" --non-soi "a red disc on a field" \
		--rounds 3 --m 10 --k 3 --train-steps 50 --steps 10 --out $(DEMO)/run
	$(VENV)/bin/gal show $(DEMO)/run

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
