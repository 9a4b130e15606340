"""Tidy Parquet tables of the pipeline: their schemas, aggregation and the paper's numbers.

Schemas (column -> pandas dtype kind: f float, i integer, O string/object):

trials.parquet       one row per (trial, epoch) of every Ray Tune study
accuracy.parquet     one row per (study, eps_train, eps_test): accuracy buckets and scores
mse_curves.parquet   one row per (study, eps_train, eps_test, t): MSE(t) of eq. 6

``secV_accuracy`` is the Sec. V table (clean test set, first eps_train) beside the paper's
counts. The analyses declare their own tables and schemas (:mod:`sanode.pipeline.analyses`), named
after the paper's figure they feed.

Every row carries ``mlflow_run_id``: the trial's run (trials), the evaluation run or the
analysis run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import pandas as pd

SCHEMAS: dict[str, dict[str, str]] = {
    "trials": {
        "study": "O",
        "trial_id": "O",
        "status": "O",
        "epoch": "i",
        "train_loss": "f",
        "eps_train": "f",
        "mlflow_run_id": "O",
    },
    "accuracy": {
        "study": "O",
        "dataset": "O",
        "eps_train": "f",
        "eps_test": "f",
        "noise_seed": "i",
        "train_seed": "i",
        "is_best": "b",
        "n": "i",
        "exact": "i",
        "partial": "i",
        "wrong": "i",
        "accuracy": "f",
        "nearest_accuracy": "f",
        "m_f": "f",
        "m_f_std": "f",
        "mse": "f",
        "work_fraction": "f",
        "t_eval": "f",
        "trial_id": "O",
        "mlflow_run_id": "O",
    },
    "mse_curves": {
        "study": "O",
        "dataset": "O",
        "eps_train": "f",
        "eps_test": "f",
        "t": "f",
        "mse": "f",
        "mlflow_run_id": "O",
    },
}

SCHEMAS["secV_accuracy"] = {
    # Sec. V: accuracy on the clean test set beside the paper
    "study": "O",
    "dataset": "O",
    "source": "O",
    "n": "i",
    "exact": "i",
    "partial": "i",
    "wrong": "i",
    "accuracy": "f",
    "nearest_accuracy": "f",
    "t_eval": "f",
    "mlflow_run_id": "O",
}

# Sec. V of the paper: 10,000 test images, exact / partial (0.95 <= m_f < 1) / wrong.
PAPER_BUCKETS = {
    "mnist": {"exact": 9776, "partial": 30, "wrong": 194, "accuracy": 0.9806},
    "fashion": {"exact": 8740, "partial": 81, "wrong": 1179, "accuracy": 0.8821},
}


class SchemaError(ValueError):
    """A table lacks a documented column or has the wrong kind of values in it."""


def check_schema(
    frame: pd.DataFrame, name: str, schema: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Raise :class:`SchemaError` unless ``frame`` holds every column of table ``name`` (of
    ``schema``, else of :data:`SCHEMAS`; an analysis declares its tables' schemas)."""
    for column, kind in (schema if schema is not None else SCHEMAS[name]).items():
        if column not in frame.columns:
            raise SchemaError(f"table {name} lacks column {column!r} (has {list(frame.columns)})")
        actual = frame[column].dtype.kind
        ok = actual == kind or (kind == "f" and actual in "fi") or (kind == "O" and actual in "OSU")
        if not ok and not frame.empty:
            raise SchemaError(
                f"table {name}: column {column!r} has kind {actual!r}, expected {kind!r}"
            )
    return frame


def concat_tables(paths: Iterable[str | os.PathLike], name: str) -> pd.DataFrame:
    """Read and stack Parquet files of one table kind, checking the schema."""
    frames = [pd.read_parquet(p) for p in paths]
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=list(SCHEMAS[name]))
    )
    if name == "trials" and "status" in frame:
        frame["status"] = frame["status"].astype(str)
    return check_schema(frame, name)


def secv_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Sec. V: buckets on the clean test set (first noise draw, lowest eps_train) per study,
    beside the paper's counts for MNIST and Fashion-MNIST (``source`` = sanode / paper)."""
    clean = accuracy[(accuracy["eps_test"] == 0.0) & accuracy["is_best"]]
    clean = clean[clean["noise_seed"] == clean["noise_seed"].min()]
    rows = []
    for study, group in clean.groupby("study", sort=False):
        best = group.loc[group["eps_train"].idxmin()]
        rows.append(
            {
                "study": study,
                "dataset": best["dataset"],
                "source": "sanode",
                "n": int(best["n"]),
                "exact": int(best["exact"]),
                "partial": int(best["partial"]),
                "wrong": int(best["wrong"]),
                "accuracy": float(best["accuracy"]),
                "nearest_accuracy": float(best["nearest_accuracy"]),
                "t_eval": float(best["t_eval"]),
                "mlflow_run_id": best["mlflow_run_id"],
            }
        )
        paper = PAPER_BUCKETS.get(best["dataset"])
        if paper:
            rows.append(
                {
                    "study": study,
                    "dataset": best["dataset"],
                    "source": "paper",
                    "n": 10000,
                    **{k: paper[k] for k in ("exact", "partial", "wrong")},
                    "accuracy": paper["accuracy"],
                    "nearest_accuracy": float("nan"),
                    "t_eval": 120.0,
                    "mlflow_run_id": "",
                }
            )
    return check_schema(pd.DataFrame(rows, columns=list(SCHEMAS["secV_accuracy"])), "secV_accuracy")
