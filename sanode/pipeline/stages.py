"""The study pipeline's stages as plain functions; Snakemake scripts only wire files to them.

The pipeline config (``workflow/config/*.yaml``, validated against
``workflow/schemas/config.schema.yaml``) has a ``project`` block (data folder, mirror),
``mlflow`` and ``ray`` blocks, and one entry per study under ``studies``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import files
from ..config import TrainConfig
from ..data.prepare import load_prepared, prepare_dataset
from ..training.checkpoint import load_model
from . import analyses, layout, plots, tables, tracking
from .robustness import score
from .study import (
    eps_train_grid,
    evaluate_settings,
    evaluation_digest,
    prepare_settings,
    study_settings,
    train_settings,
    winner_of,
    winner_settings,
)
from .validate import analysis_digest

log = logging.getLogger(__name__)


def tracking_uri(config: dict) -> str:
    return tracking.resolve_tracking_uri(config.get("mlflow", {}).get("tracking_uri"), Path.cwd())


def experiment_name(config: dict) -> str:
    return config.get("mlflow", {}).get("experiment", "sanode")


# -- stages ----------------------------------------------------------------------------------
def prepare_stage(config: dict, study: str, out: str) -> None:
    prep = prepare_settings(config, study)
    cfg = TrainConfig.from_dict(train_settings(config, study))
    meta = prepare_dataset(
        cfg, out, val_fraction=prep.val_fraction, test_per_class=prep.test_per_class
    )
    log.info("prepared %s: %s", study, meta["sizes"])


def tune_stage(
    config: dict,
    study: str,
    data: str,
    out_dir: str,
    storage_dir: str,
    threads: int,
    winner: str | None = None,
) -> None:
    """Run the study's trials; with ``winner`` (the ``best.json`` of the study named by
    ``winner_of``) the trials retrain that study's selected settings at this study's budget."""
    from .tune import run_study

    ray_cfg = config.get("ray", {})
    settings = study_settings(config, study)
    if winner is not None:
        inherited = winner_settings(json.loads(Path(winner).read_text()))
        settings = dataclasses.replace(settings, base={**settings.base, **inherited})
        log.info(
            "study %s retrains the winner of %s: %s", study, winner_of(config, study), inherited
        )
    table = run_study(
        settings,
        data_path=data,
        out_dir=out_dir,
        storage_dir=storage_dir,
        tracking_uri=tracking_uri(config),
        experiment=experiment_name(config),
        ray_address=ray_cfg.get("address"),
        num_cpus=ray_cfg.get("num_cpus") or threads,
        project_root=Path.cwd(),
        tracking_wait_s=float(config.get("mlflow", {}).get("wait_s", 300)),
    )
    log.info("study %s: %d trials", study, table["trial_id"].nunique())


def _tracked_run(config: dict, **kwargs):
    """:func:`sanode.pipeline.tracking.run` in the config's store and experiment."""
    return tracking.run(tracking_uri(config), experiment_name(config), **kwargs)


def evaluate_stage(
    config: dict,
    study: str,
    eps_train: str,
    models: str,
    data: str,
    best_json: str,
    outputs: dict[str, str],
    threads: int,
) -> None:
    """Evaluate the model selected for ``eps_train`` over the study's eps_test grid (and,
    with ``seed`` in the search space, the same settings trained from the other seeds).
    ``outputs``: paths of ``accuracy``, ``mse`` and ``states``."""
    torch.set_num_threads(max(1, threads))
    settings = evaluate_settings(config, study)
    checkpoint = layout.model_path(models, eps_train)
    model, cfg, _ = load_model(checkpoint)
    prepared = load_prepared(data)
    x, y = prepared.split("test")
    best = json.loads(Path(best_json).read_text())["models"][eps_train]
    with _tracked_run(
        config,
        # one run per set of settings (a changed eps_test grid is a new run, not a param clash)
        key={
            "sanode.study": study,
            "sanode.rule": "evaluate",
            "sanode.eps_train": eps_train,
            "sanode.digest": evaluation_digest(config, study),
        },
        stale={"sanode.study": study, "sanode.rule": "evaluate", "sanode.eps_train": eps_train},
        name=f"evaluate-{study}-eps{eps_train}",
        tags={
            **tracking.provenance_tags(),
            "sanode.kind": "evaluation",
            "sanode.trial_id": str(best["trial_id"]),
            "sanode.wildcards": json.dumps({"study": study, "eps_train": eps_train}),
        },
        parent={"sanode.study": study, "sanode.kind": "tune"},
    ) as run:
        splits = {"test": list(settings.eps_test)}
        run.log_datasets(prepared.meta, str(Path(data).resolve()), splits)
        # every scored cell is kept: a stopped evaluation, or one carried to another
        # machine, scores only the cells it lacks
        cache = layout.scores_dir(study, evaluation_digest(config, study))
        res = score(model, cfg, x, y, settings, cache=cache)
        rows = [res.accuracy.assign(train_seed=cfg.seed, is_best=True, trial_id=best["trial_id"])]
        rows += _other_seeds(best, models, eps_train, x, y, settings, cache)
        t_eval = settings.horizon(cfg)
        run.log_params(
            {
                "checkpoint": checkpoint,
                "t_eval": t_eval,
                "eval_products": model.eval_products.name,  # auto: resolved here
                "eps_test": json.dumps(list(settings.eps_test)),
            }
        )
        run.set_tags(tracking.precision_tags(model.precision))
        for i, row in res.accuracy.iterrows():
            run.log_metrics(row.to_dict(), step=int(i))
        extra = {
            "study": study,
            "dataset": cfg.dataset,
            "eps_train": float(eps_train),
            "mlflow_run_id": run.run_id,
        }
        accuracy = pd.concat(rows, ignore_index=True).assign(**extra, t_eval=t_eval)
        accuracy["trial_id"] = accuracy["trial_id"].astype(str)
        mse = res.mse.assign(**extra)
        files.write_parquet(outputs["accuracy"], tables.check_schema(accuracy, "accuracy"))
        files.write_parquet(outputs["mse"], tables.check_schema(mse, "mse_curves"))
        states = {k: v.contiguous() for k, v in res.states.items()}
        files.write_torch(outputs["states"], states, what="states")
        run.log_artifact(outputs["accuracy"], "tables")
        if float(eps_train) == eps_train_grid(config, study)[0]:  # the study's Sec. V model
            _register(run, study, model, cfg, t_eval, res.accuracy, best)


def _other_seeds(
    best: dict, models: str, eps_train: str, x, y, settings, cache: str
) -> list[pd.DataFrame]:
    """The accuracy rows of the selected settings trained from the other seeds (``seed`` in
    the search space): the spread over training seeds. The MSE curves and states stay those
    of the best model."""
    rows = []
    for seed, sibling in best.get("seeds", {}).items():
        if sibling["trial_id"] == best["trial_id"]:
            continue
        other, other_cfg, _ = load_model(layout.model_path(models, eps_train, int(seed)))
        res = score(other, other_cfg, x, y, settings, mse_items=1, cache=cache)
        rows.append(
            res.accuracy.assign(train_seed=int(seed), is_best=False, trial_id=sibling["trial_id"])
        )
    return rows


def _register(run, study: str, model, cfg, t_eval: float, accuracy: pd.DataFrame, best) -> None:
    """Log the model as an MLflow pytorch model (an :class:`AttractorClassifier`: images ->
    sign overlaps with each pattern) and register it as ``sanode-<study>``, tagged with its
    test H on the clean (else the least noisy) test set and the runs that trained and
    evaluated it."""
    from .classify import AttractorClassifier

    first = accuracy[accuracy["noise_seed"] == accuracy["noise_seed"].min()]
    row = first.loc[first["eps_test"].idxmin()]
    classifier = AttractorClassifier.from_config(model, cfg, t_eval)
    n, k = model.patterns.shape[1], model.patterns.shape[0]
    version = run.log_model(
        classifier,
        registered=f"sanode-{study}",
        signature=(n, k),
        tags={
            "test_accuracy": f"{float(row['accuracy']):.6f}",
            "test_eps": f"{float(row['eps_test']):g}",
            "test_n": int(row["n"]),
            "eps_train": layout.eps_label(cfg.eps_train),
            "dataset": cfg.dataset,
            "trained_by_run": best.get("mlflow_run_id") or "",
            "evaluated_by_run": run.run_id,
        },
    )
    log.info("registered sanode-%s version %s (test H %.4f)", study, version, row["accuracy"])


def aggregate_stage(
    trials: list[str], accuracy: list[str], mse: list[str], outputs: dict[str, str]
) -> None:
    """Stack the per-study tables into ``results/tables`` (schemas checked)."""
    for name, paths in (("trials", trials), ("accuracy", accuracy), ("mse_curves", mse)):
        frame = tables.concat_tables(paths, name)
        Path(outputs[name]).parent.mkdir(parents=True, exist_ok=True)
        files.write_parquet(outputs[name], frame)
        log.info("%s: %d rows", name, len(frame))
        if name == "accuracy" and "secV" in outputs:
            files.write_parquet(outputs["secV"], tables.secv_accuracy(frame))


def figures_stage(config: dict, tables_in: dict[str, str], outputs: dict[str, Any]) -> None:
    """Draw every figure from the tables and log figures and tables to each study's run."""
    trials = pd.read_parquet(tables_in["trials"])
    accuracy = pd.read_parquet(tables_in["accuracy"])
    curves = pd.read_parquet(tables_in["mse_curves"])
    for study, path in outputs["fig3"].items():
        plots.mf_vs_eps_test(accuracy, study, path)
    for study, path in outputs["fig4"].items():
        plots.mse_over_time(curves, study, path)
    for study, path in outputs["tuning"].items():
        plots.tuning_curves(trials, study, study_settings(config, study).metric, path)
    plots.buckets_vs_paper(pd.read_parquet(tables_in["secV"]), outputs["buckets"])
    for study in config["studies"]:
        run = tracking.existing_run(
            tracking_uri(config),
            experiment_name(config),
            {"sanode.study": study, "sanode.kind": "tune"},
        )
        if run is None:
            continue
        for group in ("fig3", "fig4", "tuning"):
            run.log_artifact(outputs[group][study], "figures")
        run.log_artifact(outputs["buckets"], "figures")
        for path in tables_in.values():
            run.log_artifact(path, "tables")


def analysis_stage(
    config: dict, name: str, inputs: dict[str, Any], outputs: dict[str, str], threads: int = 1
) -> None:
    """Run analysis ``name`` (:mod:`sanode.pipeline.analyses`) in its MLflow run; write its
    tables.

    ``inputs``: the rule's named inputs (``models``, ``data``, ``trials``: one path per study
    of the analysis, in :func:`sanode.pipeline.analyses.studies` order; ``states``: one path).
    ``outputs``: one path per table key. Every table gets the run's ``mlflow_run_id`` column
    and is checked against the schema the analysis declares.
    """
    torch.set_num_threads(max(1, threads))
    analysis = analyses.get(name)
    settings = analysis.settings(config)
    names = analysis.studies(settings, config)

    def per_study(key: str) -> dict[str, str]:
        return dict(zip(names, inputs[key], strict=True)) if key in inputs else {}

    ctx = analyses.Context(
        config=config,
        models=per_study("models"),
        data=per_study("data"),
        trials=per_study("trials"),
        states=inputs.get("states"),
    )
    with _tracked_run(
        config,
        key=_analysis_key(config, name),
        stale={"sanode.kind": "analysis", "sanode.analysis": name},
        name=f"analysis-{name}",
        tags={
            **tracking.provenance_tags(),
            "sanode.rule": name,
            "sanode.analysis_config": json.dumps(settings.to_dict())[:5000],
            **_data_checksums(ctx.data),
        },
    ) as run:
        run.log_params(settings.to_dict())
        result = analysis.run(settings, ctx)
        for key, table in analysis.tables.items():
            frame = result.tables[key].assign(mlflow_run_id=run.run_id)
            tables.check_schema(frame, table.name, table.schema)
            Path(outputs[key]).parent.mkdir(parents=True, exist_ok=True)
            files.write_parquet(outputs[key], frame)
            log.info("%s: %d rows -> %s", table.name, len(frame), outputs[key])
            run.log_artifact(outputs[key], "tables")
        if result.metrics:
            run.log_metrics(result.metrics)


def _analysis_key(config: dict, name: str) -> dict[str, str]:
    """The tags of an analysis' MLflow run: one run per set of settings."""
    return {
        "sanode.kind": "analysis",
        "sanode.analysis": name,
        "sanode.digest": analysis_digest(config, name),
    }


def _data_checksums(data: dict[str, str]) -> dict[str, str]:
    tags = {}
    for study, path in data.items():
        meta = Path(path).with_suffix(".json")
        if meta.is_file():
            tags[f"sanode.data_sha256.{study}"] = json.loads(meta.read_text())["cache_sha256"]
    return tags


def analysis_figures_stage(
    config: dict,
    name: str,
    tables_in: dict[str, str],
    figures_out: dict[str, str],
    accuracy: str | None = None,
) -> None:
    """Draw the figures of analysis ``name`` from its tables (and the aggregated accuracy
    table when it reads it) and attach them to the analysis's MLflow run."""
    analysis = analyses.get(name)
    frames = {key: pd.read_parquet(path) for key, path in tables_in.items()}
    ours = pd.read_parquet(accuracy) if accuracy and analysis.uses_accuracy else None
    for path in figures_out.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    analysis.draw(analysis.settings(config), frames, figures_out, ours)
    run = tracking.existing_run(
        tracking_uri(config), experiment_name(config), _analysis_key(config, name)
    )
    if run is not None:
        for path in figures_out.values():
            run.log_artifact(path, "figures")


def run_stage(stage, *args, **kwargs) -> None:
    """Run a stage; a data, config or tracking-store problem or a full disk ends it with its
    one-line message and no traceback; an interruption with one line and exit status 130."""
    from ..config import ConfigError
    from ..data.raw import DataError
    from ..files import DiskFullError
    from .tracking import TrackingStoreError

    try:
        stage(*args, **kwargs)
    except (DataError, ConfigError, TrackingStoreError, DiskFullError) as err:
        log.error("%s", err)
        raise SystemExit(f"sanode: error: {err}") from None
    except KeyboardInterrupt as err:  # Ctrl-C, or Tune's graceful stop (StudyInterrupted)
        message = str(err) or "interrupted; finished work is kept, rerun the same command to resume"
        log.error("%s", message)
        print(f"sanode: {message}", file=sys.__stderr__)
        raise SystemExit(130) from None


def setup_logging(log_file: str | os.PathLike | None) -> None:
    """Send everything a pipeline step prints (Python logging, warnings, Ray's progress
    tables, child processes) to its Snakemake log file."""
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for stream in (1, 2):
            os.dup2(fd, stream)
        os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        handlers=[logging.StreamHandler()],
        force=True,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.captureWarnings(True)
