"""The study pipeline's stages as plain functions; Snakemake scripts only wire files to them.

The pipeline config (``workflow/config/*.yaml``, validated against
``workflow/schemas/config.schema.yaml``) has a ``project`` block (data folder, mirror),
``mlflow`` and ``ray`` blocks, and one entry per study under ``studies``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import plots, tables, tracking
from .checkpoint import load_model
from .config import TrainConfig, matmul_precision
from .prepare import load_prepared, prepare_dataset
from .robustness import evaluate_noise_grid
from .study import PipelineConfigError, study_settings, train_settings

log = logging.getLogger(__name__)


def tracking_uri(config: dict) -> str:
    return tracking.resolve_tracking_uri(config.get("mlflow", {}).get("tracking_uri"), Path.cwd())


def experiment_name(config: dict) -> str:
    return config.get("mlflow", {}).get("experiment", "sanode")


# -- stages ----------------------------------------------------------------------------------
def prepare_stage(config: dict, study: str, out: str) -> None:
    spec = config["studies"][study]
    prep = spec.get("prepare", {})
    cfg = TrainConfig.from_dict(train_settings(config, study))
    meta = prepare_dataset(
        cfg,
        out,
        val_fraction=prep.get("val_fraction", 0.1),
        test_per_class=prep.get("test_per_class"),
    )
    log.info("prepared %s: %s", study, meta["sizes"])


def tune_stage(
    config: dict, study: str, data: str, out_dir: str, storage_dir: str, threads: int
) -> None:
    from .tune import run_study

    ray_cfg = config.get("ray", {})
    table = run_study(
        study_settings(config, study),
        data_path=data,
        out_dir=out_dir,
        storage_dir=storage_dir,
        tracking_uri=tracking_uri(config),
        experiment=experiment_name(config),
        ray_address=ray_cfg.get("address"),
        num_cpus=ray_cfg.get("num_cpus") or threads,
        project_root=Path.cwd(),
    )
    log.info("study %s: %d trials", study, table["trial_id"].nunique())


def evaluate_stage(
    config: dict,
    study: str,
    eps_train: str,
    checkpoint: str,
    data: str,
    best_json: str,
    accuracy_out: str,
    mse_out: str,
    states_out: str,
    threads: int,
) -> None:
    """Evaluate the best model of one eps_train over the study's eps_test grid (and, with
    ``seed`` in the search space, the same settings trained from the other seeds)."""
    torch.set_num_threads(max(1, threads))
    spec = config["studies"][study].get("evaluate", {})
    model, cfg, _ = load_model(checkpoint)
    prepared = load_prepared(data)
    x, y = prepared.split("test")
    best = json.loads(Path(best_json).read_text())["models"][eps_train]
    client = tracking.client(tracking_uri(config))
    exp_id = tracking.experiment_id(client, experiment_name(config))
    key = {"sanode.study": study, "sanode.rule": "evaluate", "sanode.eps_train": eps_train}
    tracking.mark_stale_runs(client, exp_id, key)
    parent = tracking.find_run(client, exp_id, {"sanode.study": study, "sanode.kind": "study"})
    run_id = tracking.start_or_resume_run(
        client,
        exp_id,
        key=key,
        name=f"evaluate-{study}-eps{eps_train}",
        tags={
            **tracking.provenance_tags(),
            "sanode.kind": "evaluation",
            "sanode.trial_id": str(best["trial_id"]),
            "sanode.wildcards": json.dumps({"study": study, "eps_train": eps_train}),
        },
        parent_run_id=parent,
    )
    try:
        t_eval = float(spec.get("t_eval", cfg.t_eval))
        grid = dict(
            eps_test=[float(e) for e in spec.get("eps_test", [0.0])],
            t_end=t_eval,
            dt=cfg.dt,
            method=cfg.method,
            threshold=cfg.threshold,
            batch_size=int(spec.get("batch_size", cfg.eval_batch_size)),
            seed=int(spec.get("seed", 0)),
            mse_every=int(spec.get("mse_every", 10)),
            tol=spec.get("tol"),
            noise_seeds=int(spec.get("noise_seeds", 1)),
        )
        with matmul_precision(cfg.matmul_precision):
            res = evaluate_noise_grid(
                model, x, y, mse_items=int(spec.get("mse_items", 200)), **grid
            )
        rows = [res.accuracy.assign(train_seed=cfg.seed, is_best=True, trial_id=best["trial_id"])]
        # the same settings trained from the other seeds (seed in the search space): the
        # spread over training seeds; MSE curves and states stay those of the best model
        for seed, sibling in best.get("seeds", {}).items():
            if sibling["trial_id"] == best["trial_id"]:
                continue
            other, other_cfg, _ = load_model(
                Path(checkpoint).parent / Path(sibling["checkpoint"]).name
            )
            with matmul_precision(other_cfg.matmul_precision):
                extra_res = evaluate_noise_grid(other, x, y, mse_items=1, **grid)
            rows.append(extra_res.accuracy.assign(train_seed=int(seed), is_best=False,
                                                  trial_id=sibling["trial_id"]))  # fmt: skip
        tracking.log_params(
            client,
            run_id,
            {
                "checkpoint": checkpoint,
                "t_eval": t_eval,
                "eps_test": json.dumps(spec.get("eps_test")),
            },
        )
        for i, row in res.accuracy.iterrows():
            tracking.log_metrics(client, run_id, row.to_dict(), step=int(i))
        extra = {
            "study": study,
            "dataset": cfg.dataset,
            "eps_train": float(eps_train),
            "mlflow_run_id": run_id,
        }
        accuracy = pd.concat(rows, ignore_index=True).assign(**extra, t_eval=t_eval)
        accuracy["trial_id"] = accuracy["trial_id"].astype(str)
        mse = res.mse.assign(**extra)
        tables.check_schema(accuracy, "accuracy").to_parquet(accuracy_out, index=False)
        tables.check_schema(mse, "mse_curves").to_parquet(mse_out, index=False)
        torch.save({k: v.contiguous() for k, v in res.states.items()}, states_out)
        client.log_artifact(run_id, accuracy_out, artifact_path="tables")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def aggregate_stage(
    trials: list[str], accuracy: list[str], mse: list[str], outputs: dict[str, str]
) -> None:
    """Stack the per-study tables into ``results/tables`` (schemas checked)."""
    for name, paths in (("trials", trials), ("accuracy", accuracy), ("mse_curves", mse)):
        frame = tables.concat_tables(paths, name)
        Path(outputs[name]).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(outputs[name], index=False)
        log.info("%s: %d rows", name, len(frame))
        if name == "accuracy" and "secV" in outputs:
            tables.secv_accuracy(frame).to_parquet(outputs["secV"], index=False)


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
    client = tracking.client(tracking_uri(config))
    exp_id = tracking.experiment_id(client, experiment_name(config))
    for study in config["studies"]:
        parent = tracking.find_run(client, exp_id, {"sanode.study": study, "sanode.kind": "study"})
        if parent is None:
            continue
        for group in ("fig3", "fig4", "tuning"):
            client.log_artifact(parent, outputs[group][study], artifact_path="figures")
        client.log_artifact(parent, outputs["buckets"], artifact_path="figures")
        for path in tables_in.values():
            client.log_artifact(parent, path, artifact_path="tables")


def run_stage(stage, *args, **kwargs) -> None:
    """Run a stage; a data, config or tracking-store problem ends it with its one-line
    message and no traceback; an interruption with one line and exit status 130."""
    from .config import ConfigError
    from .data import DataError
    from .tracking import TrackingStoreError

    try:
        stage(*args, **kwargs)
    except (DataError, ConfigError, PipelineConfigError, TrackingStoreError) as err:
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
