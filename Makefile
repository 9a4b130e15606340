# Two entry points: `make study` (the main job) and `make test` (the test suite).
# Both create the virtual environment .venv on first use (torch/torchvision pinned exactly).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= default
CORES ?= all

.PHONY: help study publish long search robustness carry smoke test test-fast lint bench ablation report clean-results gpu-check

help:  ## this list
	@grep -E '^[a-z][a-z -]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

# torch 2.14.1 for x86_64 is a CUDA build: the venv takes about 6.6 GB; a fresh one is refused
# with the space it needs when the disk holds less than 6,000 MiB (pip would fail half-way;
# SANODE_MIN_FREE_MIB sets another floor)
$(VENV)/.installed: pyproject.toml
	@[ -d $(VENV) ] || free=$$(df -Pm . | awk 'NR==2 {print $$4}'); \
	if [ -n "$$free" ] && [ "$$free" -lt $${SANODE_MIN_FREE_MIB:-6000} ]; then \
		echo "make: the virtual environment $(VENV) needs about 6.6 GB (torch 2.14.1 is a CUDA" \
			"build) but only $$free MiB are free on $$(df -P . | awk 'NR==2 {print $$6}'):" \
			"free disk space (e.g. delete runs/ or old clones) and run make again" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

study: $(VENV)/.installed  ## the main job: the default config's studies through the whole DAG (CONFIG=<name> for another)
	$(BIN)/sanode check-config workflow/config/$(CONFIG).yaml
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$(CONFIG).yaml

# a run writes results/tables, results/figures and results/benchmarks, which git ignores (a
# run never dirties the checkout); publishing copies them to results/default/ (committed), and
# `make report` renders README.md and docs/ from them
publish:  ## copy the default run's tables, figures and stage times to results/default/
	rm -rf results/default
	mkdir -p results/default
	cp -r results/tables results/figures results/benchmarks results/default/

# the long CPU protocol (workflow/config/long.yaml) and the MNIST/Fashion hyperparameter
# search (workflow/config/search.yaml): each runs in runs/<name> (scratch, resumable), then
# its tables and figures are copied to results/<name>/ (committed). Trial checkpoints and scored
# test cells kept in results/<name>/carry/ (a run longer than a machine's session) are copied
# into the run's Ray folder first, never over a file already there: their trials go on instead
# of starting over, and their evaluations score only the cells they lack
long search robustness: $(VENV)/.installed  ## the long CPU protocol / the search and its retrains / the noise grid on MNIST and Fashion-MNIST
	$(BIN)/sanode check-config workflow/config/$@.yaml
	if [ -d results/$@/carry ]; then \
		mkdir -p runs/$@/results/ray && cp -rn results/$@/carry/. runs/$@/results/ray/; fi
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$@.yaml
	mkdir -p results/$@
	cp -r runs/$@/results/tables runs/$@/results/figures results/$@/

# a long/search/robustness run stopped before its end (a machine taken back): its trials'
# checkpoints and the test cells its evaluations scored so far, copied to results/<name>/carry/
# to be committed; the next `make <name>` on any machine copies them back and goes on from them
carry:  ## keep a stopped run's trial checkpoints and scores for the next machine (NAME=long|search|robustness)
	@case "$(NAME)" in long|search|robustness) ;; *) echo "make carry: say which run," \
		"e.g. make carry NAME=robustness (one of long, search, robustness)" >&2; exit 1;; esac
	@ls -d runs/$(NAME)/results/ray/*/trials-* >/dev/null 2>&1 || { echo "make carry:" \
		"runs/$(NAME) holds no trial checkpoints; start the run with make $(NAME)" >&2; exit 1; }
	for d in runs/$(NAME)/results/ray/*/; do \
		mkdir -p results/$(NAME)/carry/$$(basename $$d) && \
		cp -r $$d/trials-* $$(ls -d $$d/scores-* 2>/dev/null) \
			results/$(NAME)/carry/$$(basename $$d)/ || exit 1; done
	du -sh results/$(NAME)/carry

# the whole DAG on tiny data in its own folder (runs/smoke); needs the data (mirror or network)
smoke: $(VENV)/.installed  ## the whole DAG on tiny data in runs/smoke (a minute or two)
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/smoke.yaml

test: $(VENV)/.installed  ## the tests: ruff (lint and format), mypy, docs agree with the tables, pytest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sanode report --check
	$(BIN)/pytest

test-fast: $(VENV)/.installed  ## the unit tests only (no end-to-end, Ray or Snakemake runs)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

report: $(VENV)/.installed  ## README.md and docs/ tables rendered again from results/
	$(BIN)/sanode report

lint: $(VENV)/.installed  ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# each accuracy lever alone over the base recipe at equal training work, MNIST then Fashion
# (8 arms of about 6 min each per data set; resumable: rerun to go on)
ablation: $(VENV)/.installed  ## the lever ablation (results/ablation/*.json, docs/training.md)
	for d in mnist fashion; do \
		$(BIN)/sanode ablation --config workflow/config/recipes/ablation.yaml --dataset $$d \
			--out runs/ablation/$$d --result results/ablation/$$d.json || exit 1; \
	done

bench: $(VENV)/.installed  ## the speed and memory table (results/bench/bench.json)
	$(BIN)/sanode bench --out results/bench/bench.json

# start a study from scratch: drops trained models, Ray experiments, tables, figures, logs and
# MLflow runs (what is published under results/default/, long/ and search/ stays)
clean-results:  ## start over: models, Ray experiments, tables, logs, MLflow store
	rm -rf results/tune results/ray results/eval results/tables results/figures results/logs results/benchmarks \
		data/prepared mlflow.db mlruns .snakemake runs/smoke runs/long runs/search runs/robustness

# on a CUDA machine: bench (float32, TF32, bfloat16), one paper-protocol epoch, GPU tests
gpu-check: $(VENV)/.installed  ## on a CUDA machine: GPU bench, a paper epoch, GPU tests
	sanode/lab/scripts/gpu-check.sh results/gpu
