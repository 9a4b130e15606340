"""Every path and label of the pipeline, in one place (light: no torch, pandas or Ray).

Snakemake rules, the rule scripts and the package all build their paths here, so a folder is
renamed in one line. Paths are relative to the pipeline's working directory (the project
root, or ``project.workdir`` of the config).

::

    <data_root>/prepared/<study>.pt|.json        prepare_data
    results/ray/<study>/tune-<digest>/            Ray Tune's experiment of one set of settings
    results/ray/<study>/trials-<digest>/          its trials' checkpoints
    results/ray/<study>/scores-<digest>/          evaluate's scored cells, baselines' fits
    results/tune/<study>/trials.parquet|best.json tune
    results/tune/<study>/best/eps_train=<eps>.pt  the model selected for each eps_train
    results/eval/<study>/eps_train=<eps>/<kind>   evaluate
    results/tables/<table>.parquet                aggregate and analyses
    results/figures/<figure>.png                  figures
    results/logs/<rule>[/<wildcards>].log         every rule's log
    results/benchmarks/<rule>[/<wildcards>].tsv   expensive rules' timings
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

RESULTS = "results"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
EVALUATION_KINDS = ("accuracy.parquet", "mse_curves.parquet", "states.pt")


def eps_label(eps: float) -> str:
    """The label of a noise level in paths and ``best.json`` (``0.3`` -> ``"0.3"``, ``0`` ->
    ``"0"``): the ``eps`` wildcard of the evaluate rule."""
    return f"{float(eps):g}"


# every label eps_label writes and no other spelling of it ("0.0", "0.30"): the evaluate rule's
# wildcard constraint, so that a target naming a model no tune rule writes finds no rule
EPS_LABEL = r"-?[0-9]+(\.[0-9]*[1-9])?(e[-+][0-9]+)?"


def _label(eps: float | str) -> str:
    """A noise level's label; a string (a label already, or a wildcard such as ``"{eps}"``)
    passes through unchanged."""
    return eps if isinstance(eps, str) else eps_label(eps)


def prepared(data_root: str, study: str, suffix: str = ".pt") -> str:
    """The prepared data of ``study`` (``.pt`` tensors, ``.json`` metadata)."""
    return f"{data_root}/prepared/{study}{suffix}"


def ray_storage(study: str) -> str:
    """Ray's experiments of ``study`` (one :func:`tune_experiment` per set of settings)."""
    return f"{RESULTS}/ray/{study}"


def tune_experiment(storage: str | os.PathLike, digest: str) -> Path:
    """Ray Tune's experiment of one set of a study's settings: ``<storage>/tune-<digest>``,
    or the ``study-<digest>`` folder an older release began (it resumes there)."""
    former = Path(storage) / f"study-{digest}"
    current = Path(storage) / f"tune-{digest}"
    return former if former.is_dir() and not current.exists() else current


def scores_dir(study: str, digest: str) -> str:
    """Work a stopped job of ``study`` keeps (:mod:`sanode.pipeline.kept`): the evaluate
    rule's scored cells under one set of evaluation settings (``digest``), the baselines'
    fits (``digest`` = ``"baselines"``). Beside the trials' checkpoints, so that ``make
    carry`` takes them all to the next machine."""
    return f"{ray_storage(study)}/scores-{digest}"


def tune_dir(study: str) -> str:
    """The tune rule's outputs of ``study``: ``trials.parquet``, ``best.json``, ``best/``."""
    return f"{RESULTS}/tune/{study}"


def trials_table(study: str) -> str:
    return f"{tune_dir(study)}/trials.parquet"


def best_json(study: str) -> str:
    return f"{tune_dir(study)}/best.json"


def models_dir(study: str) -> str:
    """The folder of the models the tune rule selected (one per eps_train, and seed siblings)."""
    return f"{tune_dir(study)}/best"


def model_file(eps: float | str, seed: int | None = None) -> str:
    """File name of the selected model of ``eps`` (of one training seed, for the spread)."""
    stem = f"eps_train={_label(eps)}"
    return f"{stem}.pt" if seed is None else f"{stem}.seed={int(seed)}.pt"


def model_path(models: str, eps: float | str, seed: int | None = None) -> str:
    return str(PurePosixPath(models) / model_file(eps, seed))


def evaluation(study: str, eps: float | str, kind: str) -> str:
    """An output of the evaluate rule (``kind`` one of :data:`EVALUATION_KINDS`)."""
    if kind not in EVALUATION_KINDS:
        raise ValueError(f"unknown evaluation output {kind!r}; one of {EVALUATION_KINDS}")
    return f"{RESULTS}/eval/{study}/eps_train={_label(eps)}/{kind}"


def table(name: str) -> str:
    return f"{TABLES}/{name}.parquet"


def figure(stem: str) -> str:
    return f"{FIGURES}/{stem}.png"


def log(rule: str, *parts: str) -> str:
    return "/".join([LOGS, rule, *parts]) + ".log"


def benchmark(rule: str, *parts: str) -> str:
    return "/".join([BENCHMARKS, rule, *parts]) + ".tsv"
