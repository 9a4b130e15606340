"""The lab's report renderers: the bench, time to accuracy, the lever runs and their seeds,
the ablation (``<!-- report:NAME ARG ... -->`` blocks of README.md and docs/; the framework and
the product's renderers: :mod:`sanode.pipeline.report`). Registered as the ``sanode.renderers``
entry point ``lab`` (:data:`RENDERERS`)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import EXECUTION_KEYS, RENAMED, TrainConfig, renamed
from ..pipeline.report import (
    ReportError,
    _buckets,
    _files,
    _int,
    _paths_and_options,
    _pct,
    _rel,
    _table,
)

_DEFAULT_T_TRAIN = TrainConfig().t_train  # a lever run names T_train only where it differs


def _named(record: dict, key: str) -> Any:
    """``record[key]``, or the value under its old name (results written before the rename,
    :data:`sanode.config.RENAMED`)."""
    if key in record:
        return record[key]
    old = {new: old for old, new in RENAMED.items()}[key]
    return record[old]


def tta(root: Path, args: list[str]) -> str:
    """``sanode time-to-accuracy`` results: one row per ``result.json`` (ARG: globs)."""
    body = []
    for path in _files(root, args):
        r = json.loads(path.read_text())
        cfg = r["config"]
        timeline = r["timeline"]
        epoch = statistics.median(t["epoch_s"] for t in timeline) if timeline else float("nan")

        levels = [_level(r, key) for key in ("0.900", "0.950", "0.960", "0.970")]
        body.append(
            [
                f"`{path.stem}`",
                _named(r, "train_products"),
                cfg.get("coupling_dtype", "float64"),
                _named(r, "eval_products"),
                _int(cfg["batch_size"]),
                f"{cfg['lr']:g}",
                f"{epoch:.1f} s",
                *levels,
                _pct(r["best_val_accuracy"]),
                f"{r['epochs_run']} / {r['train_wall_s']:,.0f} s",
                f"**{_pct(r['test']['accuracy'])}**",
                _buckets(r["test"]),
            ]
        )
    header = [
        "run",
        "training products",
        "A built in",
        "evaluation products",
        "batch",
        "peak lr",
        "median epoch",
        "val H ≥ 0.90",
        "≥ 0.95",
        "≥ 0.96",
        "≥ 0.97",
        "best val H",
        "epochs / wall",
        "test H",
        "exact / partial / wrong",
    ]
    return _table(header, body)


def _level(result: dict, key: str) -> str:
    hit = result["levels"].get(key)
    return "—" if hit is None else f"ep. {hit['epoch']}, {hit['wall_s']:,.0f} s"


def tta_ratio(root: Path, args: list[str]) -> str:
    """Pairs of time-to-accuracy results (ARG: before after [before after ...]
    [levels=whole_val]), a row per pair: the after/before wall-time ratio at each validation
    level both reached, of the median epoch, and the test H difference. Where only one run
    reached a level the cell is a bound: ``< r`` (the reference had not reached it when its
    whole training wall was over: the ratio is below the new run's time over that wall),
    ``> r`` the other way round. ``levels=whole_val`` reads the new runs' levels on the whole
    validation split instead (their ``--audit``; for a new run that validated on a subset)."""
    paths, options = _paths_and_options(args)
    if not paths or len(paths) % 2:
        raise ReportError("tta_ratio takes pairs of results: a reference and its new run each")
    source = options.pop("levels", "val")
    if options or source not in ("val", "whole_val"):
        given = " ".join(f"{k}={v}" for k, v in {**options, "levels": source}.items())
        raise ReportError(f"tta_ratio: options are levels=val|whole_val, got {given}")
    header = ["", "median epoch", "val H ≥ 0.90", "≥ 0.95", "≥ 0.96", "≥ 0.97", "test H"]
    body = []
    for first, second in zip(paths[::2], paths[1::2], strict=True):
        files = _files(root, [first, second])
        if len(files) != 2:
            raise ReportError(f"tta_ratio: {first} {second} match {len(files)} files, not one each")
        before, after = (json.loads(p.read_text()) for p in files)
        levels = after["levels"]
        if source == "whole_val":
            if not after.get("agreement"):
                raise ReportError(f"{second} has no audit; levels=whole_val needs --audit")
            levels = after["agreement"]["levels"]["whole_val"]
        cells = []
        for key in ("0.900", "0.950", "0.960", "0.970"):
            a, b = before["levels"].get(key), levels.get(key)
            if a is not None and b is not None:
                cells.append(f"{b['wall_s'] / a['wall_s']:.2f}")
            elif b is not None:  # the reference never got there within its wall
                cells.append(f"< {b['wall_s'] / before['train_wall_s']:.2f}")
            elif a is not None:
                cells.append(f"> {after['train_wall_s'] / a['wall_s']:.2f}")
            else:
                cells.append("—")
        epochs = [statistics.median(t["epoch_s"] for t in r["timeline"]) for r in (before, after)]
        diff = 100 * (after["test"]["accuracy"] - before["test"]["accuracy"])
        name = f"`{Path(second).stem}` / `{Path(first).stem}`"
        body.append([name, f"{epochs[1] / epochs[0]:.2f}", *cells, f"{diff:+.2f} points"])
    return _table(header, body)


def agreement(root: Path, args: list[str]) -> str:
    """Time-to-accuracy runs with ``--audit`` (ARG: globs [level=0.96]): how far the run's own
    validation H sat from the whole validation split and from the test set, in points over the
    audited epochs (mean / largest), and the first epoch at which each reached ``level`` with
    the run's training wall then (the audit's own time is not in it)."""
    paths, options = _paths_and_options(args)
    level = f"{float(options.get('level', '0.96')):.3f}"
    body = []
    for path in _files(root, paths):
        r = json.loads(path.read_text())
        agree = r.get("agreement")
        if not agree:
            raise ReportError(f"{_rel(root, path)} has no audit; run it with --audit")
        first = r["timeline"][0]
        items = sum(int(first[f"val_{b}"]) for b in ("exact", "partial", "wrong"))
        gaps = [agree[k] for k in ("val_vs_whole_val", "val_vs_test", "whole_val_vs_test")]
        if level not in agree["levels"]["val"]:
            raise ReportError(
                f"agreement: level={options['level']} is not one the audit "
                f"records; use one of {sorted(agree['levels']['val'])}"
            )
        hits = [agree["levels"][k][level] for k in ("val", "whole_val", "test")]
        body.append(
            [
                f"`{path.stem}`",
                _int(items),
                str(agree["epochs"]),
                *(f"{g['mean_points']:.2f} / {g['max_points']:.2f}" for g in gaps),
                " / ".join(
                    "—" if h is None else f"{h['epoch']} ({h['wall_s']:,.0f} s)" for h in hits
                ),
            ]
        )
    header = [
        "run",
        "validation items",
        "audited epochs",
        "val − whole val (points)",
        "val − test",
        "whole val − test",
        f"first epoch ≥ {float(level):g} (wall): val / whole val / test",
    ]
    return _table(header, body)


def eval_switches(root: Path, args: list[str]) -> str:
    """Each time-to-accuracy model scored with the other product modes (ARG: globs)."""
    body = []
    for path in _files(root, args):
        r = json.loads(path.read_text())
        own = _named(r, "eval_products")
        body.append([f"`{path.stem}`", own, "—", _pct(r["test"]["accuracy"]), "—", "—"])
        for s in r.get("eval_switches", []):
            body.append(
                [
                    f"`{path.stem}`",
                    _named(s, "eval_products"),
                    own,
                    _pct(s["test"]["accuracy"]),
                    _int(s["items_changing_bucket"]),
                    _int(s["sign_flips"]),
                ]
            )
    header = [
        "model",
        "evaluation products",
        "against",
        "test H",
        "items changing bucket",
        "flipped final signs",
    ]
    return _table(header, body)


def bench(root: Path, args: list[str]) -> str:
    """``sanode bench`` rows (ARG: one JSON): throughput, roofline share, ratios, memory."""
    (path,) = _files(root, args[:1]) if args else _files(root, [])
    rows = json.loads(path.read_text())
    body = []
    for r in rows:
        peak = f"{r['peak_mib']:,.0f}" if "peak_mib" in r else ""
        saved = f"{r['saved_mib']:,.0f}" if "saved_mib" in r else ""
        work = f" (work {r['work_fraction']:.3f})" if r["variant"] == "eval-early" else ""
        f32 = f"{r['vs_float32']:.2f}" if "vs_float32" in r else ""
        share = f"{r['of_matmul_ratio']:.2f}" if "of_matmul_ratio" in r else ""
        roof = "—" if r["variant"] == "eval-early" else f"{100 * r['roofline_fraction']:.0f} %"
        body.append(
            [
                r["variant"],
                r["dtype"],
                _int(r["steps"]),
                f"{r['image_steps_per_s']:,.0f}{work}",
                roof,
                f"{r['vs_reference']:.1f}",
                f"{r['vs_reference_normalised']:.1f}",
                f32,
                share,
                f"{r['matmul_gflops']:,.0f}",
                peak,
                saved,
            ]
        )
    header = [
        "variant",
        "dtype",
        "steps",
        "image·steps/s",
        "of roofline",
        "× ref",
        "× ref*",
        "× f32",
        "of matmul ratio",
        "matmul GFLOP/s",
        "peak MiB",
        "saved MiB",
    ]
    return _table(header, body)


def matmul_ratio(root: Path, args: list[str]) -> str:
    """One line: the bfloat16 / float32 matmul speed of a bench run (medians of its rows)."""
    from .bench import matmul_speeds

    (path,) = _files(root, args[:1]) if args else _files(root, [])
    speed = matmul_speeds(json.loads(path.read_text()))
    return (
        f"Matmul speed in that run (medians of the measurements before each row): float32 "
        f"{speed['float32']:,.0f} GFLOP/s, bfloat16 {speed['bfloat16']:,.0f} GFLOP/s, ratio "
        f"**{speed['bfloat16'] / speed['float32']:.2f}**."
    )


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


RENDERERS: dict[str, Callable[[Path, list[str]], str]] = {
    "tta": tta,
    "tta_ratio": tta_ratio,
    "agreement": agreement,
    "eval_switches": eval_switches,
    "bench": bench,
    "matmul_ratio": matmul_ratio,
    "levers": levers,
    "seeds": seeds,
    "ablation": ablation,
}
