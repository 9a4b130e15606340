"""The lab's training renderers: the lever runs, a recipe's seeds, the lever ablation."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..config import EXECUTION_KEYS, TrainConfig, renamed
from ..pipeline.report_format import (
    ReportError,
    _buckets,
    _files,
    _paths_and_options,
    _pct,
    _rel,
    _table,
)
from .report_speed import _named

_DEFAULT_T_TRAIN = TrainConfig().t_train  # a lever run names T_train only where it differs


def levers(root: Path, args: list[str]) -> str:
    """Lever runs (time-to-accuracy results, ARG: globs): loss and levers, validation, test."""
    body = []
    for path in _files(root, args):
        r = json.loads(path.read_text())
        cfg = r["config"]
        on = [f"loss {cfg['loss']}"]
        if cfg.get("loss_mse_weight"):
            on.append(f"+ {cfg['loss_mse_weight']:g} × MSE")
        if cfg.get("ema_decay"):
            on.append(f"EMA {cfg['ema_decay']:g}")
        if cfg.get("t_train_jitter"):
            jitter, t = cfg["t_train_jitter"], cfg["t_train"]
            on.append(f"random T_train in [{t - jitter:g}, {t + jitter:g}]")
        if cfg.get("augment_shift"):
            on.append(f"random shift ≤ {cfg['augment_shift']} px")
        if cfg.get("t_train", _DEFAULT_T_TRAIN) != _DEFAULT_T_TRAIN:
            on.append(f"T_train {cfg['t_train']:g}")
        if cfg.get("t_train_final"):
            last = cfg["t_train_final_epochs"]
            on.append(f"last {last} epoch(s) at T = {cfg['t_train_final']:g}")
        on.append(f"batch {cfg['batch_size']}, lr {cfg['lr']:g}")
        per = "all" if cfg.get("per_class") is None else f"{cfg['per_class']:,} per class"
        if cfg.get("train_on_validation"):
            per += " + validation"
        body.append(
            [
                f"`{path.stem}`",
                ", ".join(on),
                per,
                str(r["epochs_run"]),
                _named(r, "train_products"),
                _pct(r["best_val_accuracy"], 1),
                f"**{_pct(r['test']['accuracy'])}**",
                _buckets(r["test"]),
                f"{r['train_wall_s']:,.0f} s",
            ]
        )
    header = [
        "run",
        "levers",
        "training images",
        "epochs",
        "products",
        "best val H",
        "test H",
        "exact / partial / wrong",
        "training wall",
    ]
    return _table(header, body)


def _recipe(settings: dict) -> dict:
    """What a run computes, less its seed: the settings that must agree across one recipe's
    seeds (a setting a result predates takes its default)."""
    full = TrainConfig.from_dict(renamed(settings, warn=False)).to_dict()
    return {k: v for k, v in full.items() if k not in EXECUTION_KEYS | {"seed"}}


def _rollbacks(history: Iterable[dict]) -> int:
    return sum(1 for record in history if "rollback" in record)


def seeds(root: Path, args: list[str]) -> str:
    """One recipe trained from several seeds, a row per data set: test H of each seed, their
    mean and spread, collapse rollbacks. ARG: time-to-accuracy results (JSON globs) and,
    optionally, ``pipeline=<accuracy.parquet>`` with ``models=<folder>``: the studies of that
    table (noise-free rows) whose model the folder keeps (``<study>.pt``: its settings and
    epochs) join as seeds of their data set. Seeds of one data set that are not one recipe
    (settings other than the seed and where it ran differ), or repeat a seed, are an error."""
    paths, options = _paths_and_options(args)
    unknown = sorted(set(options) - {"pipeline", "models"})
    if unknown or ("pipeline" in options) != ("models" in options):
        raise ReportError("seeds takes result globs and optionally pipeline=PARQUET models=DIR")
    runs = []  # (data set, label, seed, settings, test buckets, rollbacks)
    for path in _files(root, paths):
        r = json.loads(path.read_text())
        seed = r.get("trained_seed", r["config"]["seed"])  # past any stalled seeds
        runs.append(
            (
                r["dataset"],
                f"`{path.stem}`",
                seed,
                r["config"],
                r["test"],
                _rollbacks(r.get("timeline", [])),
            )
        )
    if "pipeline" in options:
        from ..files import load_checkpoint

        (table,) = _files(root, [options["pipeline"]])
        if not any((root / options["models"]).glob("*.pt")):
            raise ReportError(f"models={options['models']} holds no checkpoint (<study>.pt)")
        datasets = {run[0] for run in runs}
        frame = pd.read_parquet(table)
        frame = frame[(frame["eps_test"] == 0) & frame["dataset"].isin(datasets)]
        for row in frame.to_dict("records"):
            model = root / options["models"] / f"{row['study']}.pt"
            if not model.is_file():  # a study whose model is not kept (a search's trials)
                continue
            if (frame["study"] == row["study"]).sum() > 1:
                raise ReportError(
                    f"{_rel(root, table)}: study {row['study']!r} has several "
                    "noise-free rows (seeds or training noises); its kept model "
                    "is one of them"
                )
            payload = load_checkpoint(model)  # its seed: the one it learned with (reseeds)
            history = payload.get("history", [])
            runs.append(
                (
                    row["dataset"],
                    f"`{row['study']}`",
                    int(payload["config"]["seed"]),
                    payload["config"],
                    row,
                    _rollbacks(history),
                )
            )
    body = []
    for dataset in sorted({run[0] for run in runs}, key=[r[0] for r in runs].index):
        mine = sorted((run for run in runs if run[0] == dataset), key=lambda run: run[2])
        first = _recipe(mine[0][3])
        for run in mine[1:]:
            differ = sorted(k for k, v in _recipe(run[3]).items() if first.get(k) != v)
            if differ:
                raise ReportError(
                    f"{dataset}: {run[1]} is not the recipe of {mine[0][1]} "
                    f"(settings {differ} differ)"
                )
        seen = [run[2] for run in mine]
        if len(set(seen)) != len(seen):
            raise ReportError(f"{dataset}: seeds {seen} repeat; each run needs its own seed")
        accuracy = [float(run[4]["accuracy"]) for run in mine]
        body.append(
            [
                dataset,
                ", ".join(run[1] for run in mine),
                ", ".join(map(str, seen)),
                " / ".join(_pct(a) for a in accuracy),
                f"**{_pct(statistics.mean(accuracy))}**",
                f"{100 * (max(accuracy) - min(accuracy)):.2f} points",
                _pct(min(accuracy)),
                str(sum(run[5] for run in mine)),
            ]
        )
    header = [
        "data set",
        "runs",
        "seeds",
        "test H by seed",
        "mean",
        "spread (max − min)",
        "lowest",
        "collapse rollbacks",
    ]
    return _table(header, body)


def ablation(root: Path, args: list[str]) -> str:
    """Lever ablations (``sanode ablation`` results, ARG: JSON files): each arm's lever, epochs
    at the base run's work, training wall (and its ratio to the base's), test H and its change
    against the base arm, buckets."""
    body = []
    for path in _files(root, args):
        r = json.loads(path.read_text())
        for row in r["rows"]:
            base = row["arm"] == "base"
            delta = "—" if base else f"{row['delta_test_points']:+.2f}"
            ratio = "" if base else f" ({row['wall_ratio']:.2f}×)"
            body.append(
                [
                    r["dataset"],
                    f"`{row['arm']}`",
                    row["lever"],
                    str(row["epochs"]),
                    f"{row['train_wall_s']:,.0f} s{ratio}",
                    _pct(row["best_val_accuracy"], 1),
                    f"**{_pct(row['test_accuracy'])}**",
                    delta,
                    _buckets(row),
                ]
            )
    header = [
        "data",
        "arm",
        "lever",
        "epochs",
        "training wall",
        "best val H",
        "test H",
        "Δ test H (points)",
        "exact / partial / wrong",
    ]
    return _table(header, body)
