"""The outputs of a finished Ray Tune study: its trials table (every epoch of every trial,
read from Ray's results), the metrics the tracking store missed, the selected models and
``best.json`` (:mod:`sanode.pipeline.selection`). (Ray wiring: :mod:`sanode.pipeline.tune`.)"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pandas as pd
from ray import tune

from .. import files
from ..training.checkpoint import load_checkpoint
from . import layout, selection, tracking
from .study import StudySettings
from .trial_tracking import _METRIC_KEYS, MlflowTrialCallback, trial_checkpoint

log = logging.getLogger(__name__)


def _reconcile(grid, callback: MlflowTrialCallback) -> None:
    """Every trial's MLflow run exists, is described and carries its final status and its
    checkpoint, whatever the live callback missed (a store that was away, a driver that was
    killed between a trial's end and its logging)."""
    for result in grid:
        if result.config is None:
            continue
        trial_id = _trial_id(result)
        error_file = str(Path(result.path) / "error.txt") if result.error else None
        callback.finish(trial_id, result.config, error_file=error_file)
    if callback.missed:
        message = "%d MLflow call(s) missed during the study: logged from the checkpoints"
        log.info(message, callback.missed)


def unfinished_trials(experiment_path: Path) -> list[str]:
    """Trial ids of the experiment that neither finished nor failed (an interrupted run)."""
    analysis = tune.ExperimentAnalysis(str(experiment_path))
    return [t.trial_id for t in analysis.trials if t.status not in ("TERMINATED", "ERROR")]


def _trials_table(
    grid, settings: StudySettings, client, exp_id: str, state_dir: Path
) -> pd.DataFrame:
    frames = []
    for result in grid:
        if result.config is None:  # never started (cannot happen after a complete fit)
            continue
        trial_id = _trial_id(result)
        ckpt = trial_checkpoint(state_dir, trial_id, result.config)
        times = pd.DataFrame()
        if ckpt.is_file():
            # the trial's own checkpoint holds every epoch it completed; Ray's result files can
            # lack an epoch whose report was in flight when the driver was killed
            state = load_checkpoint(ckpt)
            history = pd.DataFrame(state["history"])
            times = pd.DataFrame(state.get("epoch_times") or [])
        else:
            history = result.metrics_dataframe
        if history is None or history.empty:
            history = pd.DataFrame({"epoch": [0]})
        keep = [c for c in history.columns if c in _METRIC_KEYS or c.startswith("val_")]
        # an epoch repeated after a kill (reported, then killed before its checkpoint) is
        # recomputed deterministically: keep one row per epoch
        frame = history[keep].drop_duplicates("epoch", keep="last").copy()
        if not times.empty:
            # the wall of each epoch, summed over its runs (a rollback or a kill repeats it),
            # and the CPU that ran it last (a run carried between machines has several)
            per_epoch = times.groupby("epoch")
            frame["epoch_s"] = frame["epoch"].map(per_epoch["seconds"].sum())
            frame["cpu"] = frame["epoch"].map(per_epoch["cpu"].last())
        for key in settings.search_space:
            frame[f"param_{key}"] = result.config.get(key)
        frame["eps_train"] = float(
            result.config.get("eps_train", settings.base.get("eps_train", 0.0))
        )
        frame["trial_id"] = trial_id
        frame["status"] = "ERROR" if result.error else "TERMINATED"
        frame["checkpoint"] = str(ckpt) if ckpt.is_file() else None
        frame["mlflow_run_id"] = tracking.find_run(
            client, exp_id, {"sanode.study": settings.name, "sanode.trial_id": trial_id}
        )
        frame["study"] = settings.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _backfill_metrics(client, table: pd.DataFrame) -> None:
    """Log to MLflow the epochs a kill kept from the callback (Ray recorded them, MLflow not)."""
    metric_columns = [c for c in table.columns if c in _METRIC_KEYS or c.startswith("val_")]
    for run_id, rows in table.groupby("mlflow_run_id"):
        logged = {m.step for m in client.get_metric_history(run_id, "train_loss")}
        for _, row in rows[~rows["epoch"].isin(logged)].iterrows():
            values = {k: row[k] for k in metric_columns if pd.notna(row[k])}
            tracking.log_metrics(client, run_id, values, step=int(row["epoch"]))


def _write_outputs(
    table: pd.DataFrame, settings: StudySettings, out_dir: Path, tune_run: tracking.Run
) -> None:
    """``trials.parquet``, the selected models (copied under ``best/``) and ``best.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = out_dir / "best"
    models.mkdir(exist_ok=True)
    files.write_parquet(out_dir / "trials.parquet", table)
    metric, mode = settings.metric, settings.mode
    selected = selection.select(
        table, metric=metric, mode=mode, eps_grid=settings.eps_train_grid(), study=settings.name
    )
    for s in selected:
        shutil.copy(s.checkpoint, layout.model_path(str(models), s.eps_train))
        for seed, (_, checkpoint) in s.seeds.items():
            shutil.copy(checkpoint, layout.model_path(str(models), s.eps_train, seed))
    failed = selection.failed_trials(table)
    record = selection.best_json(
        selected, metric=metric, mode=mode, models=str(models), failed=failed
    )
    files.write_json(out_dir / "best.json", record)
    tune_run.log_artifact(out_dir / "trials.parquet", "tune")
    tune_run.log_artifact(out_dir / "best.json", "tune")


def _trial_id(result) -> str:
    """The trial id of a Tune result (its last report's, else read from its folder name)."""
    return (result.metrics or {}).get("trial_id") or _trial_id_from_path(result.path)


def _trial_id_from_path(path: str) -> str:
    """``<experiment>_<5 hex>_<5 digits>`` in Ray's trial folder name, e.g. ``6bf0a_00003``."""
    match = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(path).name)
    if match is None:
        raise ValueError(f"cannot read a trial id from the Ray trial folder {path}")
    return match.group(1)
