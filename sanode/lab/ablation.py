"""Lever ablation at equal training work: each accuracy lever switched on alone over a base
recipe, trained from scratch and scored on the whole test set.

An arm's epoch count is chosen so that it runs as many Euler steps over training images as
the base run (:func:`work`: images per epoch x steps per image, summed over the horizon
schedule): a lever that makes an epoch dearer (a longer T_train, a last epoch at T = 20, the
final fit on the validation images too) gets fewer epochs, so every arm costs the same
training wall time up to what the products do not pay (validation, the loss, the shifts),
which the result records as measured (``train_wall_s``). Each arm is one
:func:`sanode.lab.time_to_accuracy.time_to_accuracy` run in ``<out>/<arm>`` (resumable
from its checkpoint; a finished arm is read back, not retrained), all on one prepared data
cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import EXECUTION_KEYS, ConfigError, TrainConfig, renamed
from ..files import write_json

BASE = "base"


@dataclass(frozen=True)
class Arm:
    """One row of the ablation: ``changes`` (TrainConfig settings) over the base recipe."""

    name: str
    changes: dict[str, Any]
    what: str  # the lever in words, for the table


# Each lever of the issue "The search picks the model", at the settings the searches chose
# where they chose one (the sign hinge of the MNIST winner: margin 0.8, no MSE term).
ARMS: tuple[Arm, ...] = (
    Arm(BASE, {}, "the base recipe"),
    Arm(
        "sign_margin",
        {"loss": "sign_margin", "loss_margin": 0.8, "loss_mse_weight": 0.0},
        "loss: per-pixel sign hinge, margin 0.8",
    ),
    Arm(
        "overlap_ce",
        {"loss": "overlap_ce", "loss_temperature": 0.05, "loss_mse_weight": 0.0},
        "loss: cross-entropy over the overlaps, temperature 0.05",
    ),
    Arm("shift1", {"augment_shift": 1}, "random shifts <= 1 px"),
    Arm("ema", {"ema_decay": 0.999}, "EMA weights 0.999 (the better of raw and EMA kept)"),
    Arm("t_train8", {"t_train": 8.0}, "T_train 8 (from 5.5)"),
    Arm(
        "t_final20",
        {"t_train_final": 20.0, "t_train_final_epochs": 1},
        "the last epoch at T_train 20",
    ),
    Arm(
        "final_fit",
        {"train_on_validation": True},
        "final fit: the validation images trained on too (val H in-sample)",
    ),
)


def arms_named(names: list[str] | None) -> list[Arm]:
    """The arms of ``names`` (None: all), base first; an unknown name raises ``ConfigError``
    listing the known ones."""
    known = {arm.name: arm for arm in ARMS}
    if names is None:
        return list(ARMS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown ablation arm(s) {unknown}; known: {list(known)}")
    return [known[BASE], *(known[n] for n in dict.fromkeys(names) if n != BASE)]


def work(cfg: TrainConfig, n_train: int, n_val: int) -> float:
    """Euler steps over training images of a whole run of ``cfg``: per epoch the images
    trained on (``n_train``, plus ``n_val`` with ``train_on_validation``) times the epoch's
    steps T/dt (the mean steps with ``t_train_jitter``: the same)."""
    images = n_train + (n_val if cfg.train_on_validation else 0)
    return sum(images * cfg.horizon(epoch) / cfg.dt for epoch in range(cfg.epochs))


def equal_work_epochs(base: TrainConfig, arm: TrainConfig, n_train: int, n_val: int) -> int:
    """The epoch count (>= 1) whose :func:`work` for ``arm`` comes nearest to the base run's
    (ties: the smaller)."""
    target = work(base, n_train, n_val)
    best, best_gap = 1, float("inf")
    for epochs in range(1, 4 * base.epochs + 2):
        try:
            cfg = arm.replace(epochs=epochs)
        except ConfigError:  # e.g. fewer epochs than t_train_final_epochs
            continue
        gap = abs(work(cfg, n_train, n_val) - target)
        if gap < best_gap:
            best, best_gap = epochs, gap
    return best


def arm_config(base: TrainConfig, arm: Arm, n_train: int, n_val: int) -> TrainConfig:
    """The base recipe with ``arm``'s changes, at the epoch count of equal work."""
    cfg = base.replace(**arm.changes)
    return cfg.replace(epochs=equal_work_epochs(base, cfg, n_train, n_val))


def _result_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings that change an arm's result (not where or on how many threads it ran),
    as JSON reads them back."""
    kept = {k: v for k, v in renamed(values, warn=False).items() if k not in EXECUTION_KEYS}
    return json.loads(json.dumps(kept))


def row(arm: Arm, cfg: TrainConfig, result: dict[str, Any], base: dict[str, Any] | None) -> dict:
    """One line of the ablation table from an arm's time-to-accuracy result."""
    test = result["test"]
    out = {
        "arm": arm.name,
        "lever": arm.what,
        "changes": arm.changes,
        "epochs": cfg.epochs,
        "train_wall_s": result["train_wall_s"],
        "best_val_accuracy": result["best_val_accuracy"],
        "test_accuracy": test["accuracy"],
        "exact": test["exact"],
        "partial": test["partial"],
        "wrong": test["wrong"],
    }
    if base is not None:
        out["delta_test_points"] = 100.0 * (test["accuracy"] - base["test"]["accuracy"])
        out["wall_ratio"] = result["train_wall_s"] / base["train_wall_s"]
    return out


def run_ablation(
    base: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    arms: list[Arm] | None = None,
    val_fraction: float = 0.1,
    t_test: float = 120.0,
    test_tol: float | None = 1e-4,
    progress: bool = True,
    result_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train and test every arm (base first) in ``out_dir/<arm>``; return (and write to
    ``out_dir/ablation.json`` and ``result_path``) the table rows, the base config and the
    arms' configs. A finished arm (its ``result.json`` written under the same config) is read
    back; one of other settings raises ``ValueError`` (delete its folder to rerun it)."""
    from ..data.prepare import load_prepared, prepare_dataset
    from .time_to_accuracy import time_to_accuracy

    arms = arms_named(None) if arms is None else arms
    if not arms or arms[0].name != BASE:
        raise ValueError(
            f"the first arm must be {BASE!r} (each arm is compared with it), got "
            f"{[a.name for a in arms]}; build the list with arms_named()"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / "data.pt"
    if not data_path.is_file():
        prepare_dataset(base, data_path, val_fraction=val_fraction)
    data = load_prepared(data_path)
    n_train, n_val = len(data.split("train")[1]), len(data.split("val")[1])
    rows, configs, base_result = [], {}, None
    for arm in arms:
        cfg = arm_config(base, arm, n_train, n_val)
        folder = out_dir / arm.name
        done = folder / "result.json"
        if done.is_file():
            result = json.loads(done.read_text())
            if _result_settings(result["config"]) != _result_settings(cfg.to_dict()):
                raise ValueError(
                    f"{done} was written with other settings than arm {arm.name!r} has now; "
                    f"delete {folder} to rerun it"
                )
        else:
            if progress:
                print(f"ablation arm {arm.name}: {arm.what}, {cfg.epochs} epochs", flush=True)
            result = time_to_accuracy(
                cfg,
                folder,
                val_fraction=val_fraction,
                t_test=t_test,
                test_tol=test_tol,
                compare_dtypes=False,
                data_path=data_path,
                progress=progress,
            )
        if arm.name == BASE:
            base_result = result
        rows.append(row(arm, cfg, result, None if arm.name == BASE else base_result))
        configs[arm.name] = cfg.to_dict()
    summary = {
        "dataset": base.dataset,
        "budget": "equal work: Euler steps over training images as the base run",
        "n_train": n_train,
        "n_val": n_val,
        "t_test": t_test,
        "test_tol": test_tol,
        "rows": rows,
        "configs": configs,
    }
    write_json(out_dir / "ablation.json", summary, what="ablation")
    if result_path is not None:
        write_json(result_path, summary, what="ablation")
    return summary
