# Two entry points: `make study` (the main job) and `make test` (the test suite).
# Both create the virtual environment .venv on first use (torch/torchvision pinned exactly).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= default
CORES ?= all

.PHONY: study long search test lint bench clean-results gpu-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

study: $(VENV)/.installed
	$(BIN)/sanode check-config workflow/config/$(CONFIG).yaml
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$(CONFIG).yaml

# the long CPU protocol (workflow/config/long.yaml) and the MNIST/Fashion hyperparameter
# search (workflow/config/search.yaml): each runs in runs/<name> (scratch, resumable), then
# its tables and figures are copied to results/<name>/ (committed)
long search: $(VENV)/.installed
	$(BIN)/sanode check-config workflow/config/$@.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$@.yaml
	mkdir -p results/$@
	cp -r runs/$@/results/tables runs/$@/results/figures results/$@/

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/sanode bench --out results/bench/bench.json

# start a study from scratch: drops trained models, Ray experiments, tables, logs and MLflow runs
# (the committed figures stay until the next run overwrites them)
clean-results:
	rm -rf results/tune results/ray results/eval results/tables results/logs results/benchmarks \
		data/prepared mlflow.db mlruns .snakemake runs/smoke

# on a CUDA machine: bench (float32, TF32, bfloat16), one paper-protocol epoch, GPU tests
gpu-check: $(VENV)/.installed
	bench/gpu-check.sh results/gpu
