# make test      : create .venv if absent, install the package with its extras, run the test suite
# make demo      : the same set-up, then the quick demo on the built-in corpus (both systems, fewer CIF epochs, no control)
# make demo-full : the same demo with the YAML's epochs, one seed
# make experiments: demo-full with 3 seeds per student and CIF system, a top-5 teacher store, the
#                   ablations (best with shared ties, ACD/HieraDist without the weight ramp) and the
#                   low-resource CIF regime: the README's results, mean ± std; resumable; several hours
#                   on 2 cores (EXPERIMENTS_PARTS=cif_low_resource: that regime alone)
# Trainings run two side by side on 2 cores or more (DEMO_ARGS="--jobs 1": one after another).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synth_small
DEMO_OUTPUT ?= results/demo_quick
DEMO_FULL_OUTPUT ?= results/demo
EXPERIMENTS_OUTPUT ?= results/experiments
SEEDS ?= 1234,1235,1236
EXPERIMENTS_PARTS ?= kd,cif,cif_low_resource
# Other variants: DEMO_ARGS="--parts cif"; DEMO_ARGS="--epochs 8 --cif_epochs 20";
# DEMO_DATA=data/synth_medium DEMO_ARGS="--corpus_size medium"
DEMO_ARGS ?=

.PHONY: install test demo demo-full experiments clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,tensorboard,onnx]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q hieradist_lobes tests

demo: $(STAMP)
	$(PY) tools/demo.py --quick --output_folder $(DEMO_OUTPUT) --data_folder $(DEMO_DATA) $(DEMO_ARGS)

demo-full: $(STAMP)
	$(PY) tools/demo.py --output_folder $(DEMO_FULL_OUTPUT) --data_folder $(DEMO_DATA) $(DEMO_ARGS)

experiments: $(STAMP)
	$(PY) tools/demo.py --output_folder $(EXPERIMENTS_OUTPUT) --data_folder $(DEMO_DATA) --seeds $(SEEDS) \
		--store_top_k 5 --ablations --parts $(EXPERIMENTS_PARTS) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) data results .pytest_cache
