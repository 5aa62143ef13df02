# make test : create .venv if absent, install the package with its extras, run the test suite
# make demo : the same set-up, then the demo on the built-in synthetic corpus
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synth_small
DEMO_OUTPUT ?= results/demo
# Longer variants: DEMO_ARGS="--epochs 8"; DEMO_DATA=data/synth_medium DEMO_ARGS="--corpus_size medium"
DEMO_ARGS ?=

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q hieradist_lobes tests

demo: $(STAMP)
	$(PY) -m hieradist_lobes.demo --output_folder $(DEMO_OUTPUT) --data_folder $(DEMO_DATA) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) data results .pytest_cache
