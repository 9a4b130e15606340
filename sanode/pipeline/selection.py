"""Model selection from a study's trials table: pure functions of tables, no Ray, no files.

The tune stage writes ``trials.parquet`` (one row per trial and epoch), then selects per
eps_train of the grid the trial whose last finished epoch scores best on the study's metric
(the model kept is that trial's checkpoint: its last finished epoch), and with ``seed`` in
the search space the trials that share every other setting with it (the spread over
training seeds). :func:`best_json` turns the selection into the ``best.json`` record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import layout

SELECTION = "last finished epoch of the best trial"


class NoModelError(RuntimeError):
    """Every trial of one eps_train failed: there is no model to evaluate."""


@dataclass(frozen=True)
class Selected:
    """The model selected for one eps_train."""

    eps_train: float
    trial_id: str
    epoch: int  # the trial's last finished epoch (its checkpoint)
    metric_value: float
    checkpoint: str  # the trial's own checkpoint file
    mlflow_run_id: str | None
    params: dict[str, Any]  # the trial's searched settings
    seeds: dict[int, tuple[str, str]] = field(default_factory=dict)  # seed -> (trial, ckpt)


def last_epochs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its last finished epoch."""
    return table.sort_values("epoch").groupby("trial_id", sort=False).tail(1)


def finished(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per trial that did not fail and reported ``metric``: its last finished epoch
    (a trial's status is TERMINATED or ERROR; empty if no trial reports the metric)."""
    last = last_epochs(table)
    if metric not in last:
        return last.iloc[0:0]
    return last[(last["status"] != "ERROR") & last[metric].notna()]


def failed_trials(table: pd.DataFrame) -> list[str]:
    last = last_epochs(table)
    return sorted(last.loc[last["status"] == "ERROR", "trial_id"].tolist())


def select(
    table: pd.DataFrame, *, metric: str, mode: str, eps_grid: list[float], study: str = ""
) -> list[Selected]:
    """The best finished trial of every eps_train of ``eps_grid`` (ties: the later row of a
    stable sort, as before), with its seed siblings. Raises :class:`NoModelError` naming the
    eps_train whose trials all failed."""
    ok = finished(table, metric)
    out = []
    for eps in eps_grid:
        group = ok[(ok["eps_train"] - eps).abs() < 1e-9]
        if group.empty:
            raise NoModelError(
                f"study {study}: every trial with eps_train={eps} failed, so there is no model "
                "to evaluate; see the trial errors in the trials table and MLflow"
            )
        row = group.sort_values(metric, ascending=mode == "max").iloc[-1]
        out.append(
            Selected(
                eps_train=float(eps),
                trial_id=str(row["trial_id"]),
                epoch=int(row["epoch"]),
                metric_value=float(row[metric]),
                checkpoint=str(row["checkpoint"]),
                mlflow_run_id=row.get("mlflow_run_id"),
                params={k[6:]: plain_value(row[k]) for k in row.index if k.startswith("param_")},
                seeds=seed_siblings(group, row),
            )
        )
    return out


def seed_siblings(group: pd.DataFrame, best: pd.Series) -> dict[int, tuple[str, str]]:
    """With ``seed`` searched: the trials of ``group`` sharing every searched setting of
    ``best`` but the seed (``best`` included), ``{seed: (trial_id, checkpoint)}`` by seed."""
    if "param_seed" not in group:
        return {}
    same = group
    for key in (k for k in group.columns if k.startswith("param_") and k != "param_seed"):
        same = same[same[key].astype(str) == str(best[key])]
    return {
        int(s["param_seed"]): (str(s["trial_id"]), str(s["checkpoint"]))
        for _, s in same.sort_values("param_seed").iterrows()
    }


def best_json(
    selected: list[Selected], *, metric: str, mode: str, models: str, failed: list[str]
) -> dict[str, Any]:
    """The ``best.json`` record: per eps_train label the chosen trial, epoch, metric, params,
    the model's path under ``models`` and its seed siblings' paths."""
    record: dict[str, Any] = {"metric": metric, "mode": mode, "models": {}}
    for s in selected:
        record["models"][layout.eps_label(s.eps_train)] = {
            "trial_id": s.trial_id,
            "selected_epoch": s.epoch,
            "selection": SELECTION,
            "mlflow_run_id": s.mlflow_run_id,
            metric: s.metric_value,
            "checkpoint": layout.model_path(models, s.eps_train),
            "params": s.params,
            "seeds": {
                str(seed): {
                    "trial_id": trial,
                    "checkpoint": layout.model_path(models, s.eps_train, seed),
                }
                for seed, (trial, _) in s.seeds.items()
            },
        }
    record["failed_trials"] = failed
    return record


def plain_value(value):
    """A table cell as a plain Python value; a missing one (a ``null`` choice of the search
    space, NaN in a float column) as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
