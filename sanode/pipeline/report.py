"""The numbers of README.md and docs/ rendered from the tables the project writes.

A generated block in a Markdown file is

    <!-- report:NAME ARG ... -->
    (rendered Markdown, replaced on every run)
    <!-- /report -->

``NAME`` picks a renderer of :data:`RENDERERS`; ``ARG`` are paths (globs) under the project
root of the committed tables it reads (``results/**``: Parquet tables of the pipeline, JSON of
``sanode bench`` / ``sanode time-to-accuracy``). ``sanode report`` rewrites every block of
:data:`DOC_FILES`; ``sanode report --check`` changes nothing and fails when a file is out of
date, which ``make test`` runs, so a committed number cannot disagree with its table.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import EXECUTION_KEYS, RENAMED, TrainConfig, renamed
from .selection import plain_value

_DEFAULT_T_TRAIN = TrainConfig().t_train  # a lever run names T_train only where it differs

DOC_FILES = ("README.md", "docs/*.md", "docs/journal/*.md")
BLOCK = re.compile(
    r"(?P<open><!-- report:(?P<name>[\w-]+)(?P<args>[^\n]*?) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /report -->)",
    re.S,
)
OPENING = re.compile(r"<!-- report:")  # every one must open a block that BLOCK parses


class ReportError(ValueError):
    """A block names an unknown renderer or a table that does not exist."""


# -- formatting -----------------------------------------------------------------------------------
def _pct(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f} %"


def _int(value: Any) -> str:
    return f"{int(value):,}"


def _buckets(row: Any) -> str:
    return f"{_int(row['exact'])} / {_int(row['partial'])} / {_int(row['wrong'])}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _paths_and_options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """A block's arguments: the table paths, and the ``key=value`` options."""
    paths = [a for a in args if "=" not in a]
    return paths, dict(a.partition("=")[::2] for a in args if "=" in a)


def _files(root: Path, patterns: list[str]) -> list[Path]:
    if not patterns:
        raise ReportError("this block needs the table(s) it renders, e.g. results/...")
    found: list[Path] = []
    for pattern in patterns:
        hits = sorted(root.glob(pattern))
        if not hits:
            raise ReportError(f"no file matches {pattern!r} under {root}")
        found += hits
    return found


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# -- renderers --------------------------------------------------------------------------------
def secv(root: Path, args: list[str]) -> str:
    """Sec. V: test H of each model beside the paper's; ARG: ``label=path`` pairs of
    ``secV_accuracy.parquet`` tables (the paper's rows are taken from the first). A study not
    named after its data set (a search's retrained winner, ``mnist_winner``) is labelled
    ``label, study``."""
    sources = []
    for arg in args:
        label, _, pattern = arg.partition("=")
        if not pattern:
            raise ReportError(f"secv takes label=path arguments, got {arg!r}")
        sources += [(label, path) for path in _files(root, [pattern])]
    rows: dict[str, list[list[str]]] = {}
    paper_done: set[str] = set()
    for label, path in sources:
        frame = pd.read_parquet(path)
        for _, r in frame.iterrows():
            if r["source"] == "paper":
                if r["dataset"] in paper_done:
                    continue
                paper_done.add(r["dataset"])
                name = "paper (700 epochs)"
            else:
                name = label if r["study"] == r["dataset"] else f"{label}, {r['study']}"
            rows.setdefault(r["dataset"], []).append(
                [r["dataset"], name, _int(r["n"]), f"**{_pct(r['accuracy'])}**", _buckets(r)]
            )
    body = [row for dataset in rows for row in sorted(rows[dataset], key=_paper_first)]
    return _table(["data set", "model", "test images", "H", "exact / partial / wrong"], body)


def _paper_first(row: list[str]) -> int:
    return 0 if row[1].startswith("paper") else 1


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
    from ..training.bench import matmul_speeds

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


def _best_value(value: Any) -> str:
    """A setting's best value as the table shows it: numbers to 4 significant digits, a null
    choice (stored as NaN) as ``null``, words whole."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "null" if number != number else f"{number:.4g}"


def sensitivity(root: Path, args: list[str]) -> str:
    """The search's sensitivity table (ARG: sensitivity.parquet): settings by variance share."""
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, args))
    body = [
        [
            r["study"],
            str(int(r["rank"])),
            f"`{r['setting']}`",
            f"{r['variance_share']:.2f}",
            f"{r['chance_share']:.2f}",
            f"{r['spearman']:+.2f}",
            _best_value(r["best_value"]),
            f"{r['best_metric']:.3f}",
            str(int(r["trials"])),
        ]
        for _, r in frame.sort_values(["study", "rank"]).iterrows()
    ]
    header = [
        "study",
        "rank",
        "setting",
        "variance share",
        "chance share",
        "Spearman",
        "best value",
        "best val H",
        "trials",
    ]
    return _table(header, body)


def _setting(value: Any) -> Any:
    """A searched value as the search space wrote it (``null`` for a null choice)."""
    value = plain_value(value)
    return "null" if value is None else value


TRIAL_SETTINGS = (
    "loss",
    "batch_size",
    "lr",
    "t_train",
    "dt",
    "t_train_final",
    "augment_shift",
    "ema_decay",
)


def trials(root: Path, args: list[str]) -> str:
    """A search's trials, best first (ARG: trials.parquet [settings=a,b,...] [study=NAME]):
    each trial's searched settings (default :data:`TRIAL_SETTINGS`), the epochs it ran (ASHA
    stops the poor ones), its best and its last validation H."""
    paths, options = _paths_and_options(args)
    keys = options["settings"].split(",") if "settings" in options else list(TRIAL_SETTINGS)
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, paths))
    if "study" in options:
        frame = frame[frame["study"] == options["study"]]
    missing = [k for k in keys if f"param_{k}" not in frame]
    if missing:
        raise ReportError(
            f"settings {missing} were not searched; searched: "
            f"{sorted(c[6:] for c in frame if c.startswith('param_'))}"
        )
    frame = frame.sort_values("epoch")
    per_trial = (
        frame.groupby(["study", "trial_id"], sort=False)
        .agg(
            epochs=("epoch", "max"),
            best=("val_accuracy", "max"),
            last=("val_accuracy", "last"),
            **{k: (f"param_{k}", "first") for k in keys},
        )
        .reset_index()
    )
    per_trial = per_trial.sort_values(["study", "best"], ascending=[True, False])
    body = [
        [
            r["study"],
            f"`{r['trial_id']}`",
            *(_cell(_setting(r[k])) for k in keys),
            str(int(r["epochs"])),
            f"{r['best']:.3f}",
            f"{r['last']:.3f}",
        ]
        for _, r in per_trial.iterrows()
    ]
    return _table(["study", "trial", *keys, "epochs", "best val H", "last val H"], body)


def census(root: Path, args: list[str]) -> str:
    """Where inputs that are not digits flow (ARG: census.parquet)."""
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, args))
    body = [
        [
            r["study"],
            f"{r['eps_train']:g}",
            r["source"],
            _int(r["n"]),
            _int(r["planted"]),
            _int(r["spurious"]),
            _int(r["not_converged"]),
            _int(r["distinct_spurious"]),
            _pct(r["planted_fraction"], 1),
        ]
        for _, r in frame.iterrows()
    ]
    header = [
        "study",
        "ε_train",
        "inputs",
        "n",
        "planted attractor",
        "spurious fixed point",
        "not converged",
        "distinct spurious",
        "planted share",
    ]
    return _table(header, body)


def noise(root: Path, args: list[str]) -> str:
    """A metric of each study's models over the test-noise grid, mean over the training seeds
    and noise draws (ARG: accuracy.parquet [metric=accuracy|m_f|...] [study=NAME])."""
    paths, options = _paths_and_options(args)
    metric = options.get("metric", "accuracy")
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, paths))
    if "study" in options:
        frame = frame[frame["study"] == options["study"]]
    grid = frame.groupby(["study", "eps_train", "eps_test"])[metric].mean().unstack("eps_test")
    fmt = (lambda v: _pct(v, 1)) if metric.endswith("accuracy") else (lambda v: f"{v:.3f}")
    header = ["study", "ε_train", *(f"ε_test {e:g}" for e in grid.columns)]
    body = [[study, f"{eps:g}", *(fmt(v) for v in row)] for (study, eps), row in grid.iterrows()]
    return _table(header, body)


def robustness(root: Path, args: list[str]) -> str:
    """The noise grid on real data, per study: SA-nODE's best H and nearest-attractor accuracy
    at one test-noise level beside the equal-size MLP and the logistic regression trained at
    the same noise, the clean-accuracy cost, the most robust eps_train, where it leads; then
    one sentence per study saying it (ARG: accuracy.parquet baselines.parquet [at=0.3])."""
    from .analyses.baselines import robustness_summary

    paths, options = _paths_and_options(args)
    if len(paths) != 2:
        raise ReportError("robustness takes accuracy.parquet, baselines.parquet and [at=EPS]")
    accuracy = pd.read_parquet(_files(root, paths[:1])[0])
    baselines = pd.read_parquet(_files(root, paths[1:])[0])
    at = float(options.get("at", 0.3))
    rows, lines = [], []
    for study in sorted(accuracy["study"].unique()):
        s = robustness_summary(baselines, accuracy, study, at)
        rows.append(
            [
                study,
                f"{_pct(s['h'], 1)} ({s['h_eps_train']:g})",
                f"{_pct(s['nearest'], 1)} ({s['nearest_eps_train']:g})",
                f"{_pct(s['mlp'], 1)} ({s['mlp_eps_train']:g})",
                f"{_pct(s['logistic'], 1)} ({s['logistic_eps_train']:g})",
                f"{100 * s['clean_cost']:+.1f} pts",
                f"{s['most_robust']:g} ({_pct(s['most_robust_mean_h'], 1)})",
                f"{s['leads']} / {s['trails']} of {s['cells']}",
            ]
        )
        gap = 100 * (s["nearest"] - s["mlp"])
        where = (
            f"at every ε_train from ε_test {s['lead_from']:g} on"
            if s["lead_from"] is not None
            else "at no test-noise level for every ε_train"
        )
        smallest = accuracy.loc[accuracy["study"] == study, "eps_train"].min()
        lines.append(
            f"- **{study}**: at ε_test {at:g} the attractor classifier's nearest-attractor "
            f"accuracy peaks at {_pct(s['nearest'], 1)} (ε_train {s['nearest_eps_train']:g}) "
            f"against the MLP's best {_pct(s['mlp'], 1)} (ε_train {s['mlp_eps_train']:g}): "
            f"it {'leads' if gap > 0 else 'trails'} by {abs(gap):.1f} points. Over the grid it "
            f"leads in {s['leads']} and trails in {s['trails']} of {s['cells']} (ε_train, "
            f"ε_test) cells, {where}. The ε_train of its best H there "
            f"({s['h_eps_train']:g}) changes its clean H by {100 * s['clean_cost']:+.1f} points "
            f"against ε_train {smallest:g}; the most robust ε_train over all test noise is "
            f"{s['most_robust']:g}."
        )
    header = [
        "study",
        f"SA-nODE H at ε_test {at:g} (ε_train)",
        "nearest attractor (ε_train)",
        "MLP (ε_train)",
        "logistic (ε_train)",
        "clean H cost of that ε_train",
        "most robust ε_train (mean H)",
        "nearest vs MLP: leads / trails",
    ]
    return _table(header, rows) + "\n\n" + "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    big_whole = isinstance(value, float) and value.is_integer() and abs(value) >= 1000
    if isinstance(value, int) or big_whole:
        return f"{int(value):,}"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.4g}"
    return str(value)


def _frame(path: Path, key: str | None) -> pd.DataFrame:
    """A Parquet table, or a JSON list of rows (``key``: the list under that key)."""
    if path.suffix != ".json":
        return pd.read_parquet(path)
    rows = json.loads(path.read_text())
    if key is not None:
        rows = rows[key]
    return pd.DataFrame(rows)


def columns(root: Path, args: list[str]) -> str:
    """Any committed table (Parquet, or a JSON list of rows), some of its columns: ARG
    ``PATH COL,COL,...`` and, in this order when given, ``key=NAME`` (a JSON file's list under
    that key), ``where=<pandas query>`` (no spaces; ``&`` and ``|`` combine),
    ``group=COL,...`` (one row per group: the mean of the other listed columns) and
    ``sort=COL,...``."""
    if len(args) < 2:
        raise ReportError("columns takes a table and a comma-separated column list")
    cols = args[1].split(",")
    options = dict(option.partition("=")[::2] for option in args[2:])
    unknown = sorted(set(options) - {"where", "group", "sort", "key"})
    if unknown:
        raise ReportError(f"columns: unknown option(s) {unknown} (key=, where=, group=, sort=)")
    frame = pd.concat(_frame(p, options.get("key")) for p in _files(root, args[:1]))
    group = options["group"].split(",") if "group" in options else []
    missing = [c for c in {*cols, *group} if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{args[0]} has no column(s) {sorted(missing)}; it has {list(frame.columns)}"
        )
    if "where" in options:
        frame = frame.query(options["where"])
    if group:
        values = [c for c in cols if c not in group]
        frame = frame.groupby(group, as_index=False)[values].mean()
    if "sort" in options:
        frame = frame.sort_values(options["sort"].split(","))
    return _table(cols, ([_cell(v) for v in row] for row in frame[cols].itertuples(index=False)))


def stage_times(root: Path, args: list[str]) -> str:
    """Wall time of every benchmarked job of a run (ARG: the ``benchmarks`` folder of a run:
    Snakemake's ``<rule>[/<wildcards>].tsv`` files) and their sum."""
    (folder,) = _files(root, args[:1]) if args else _files(root, [])
    body, total = [], 0.0
    for path in sorted(folder.rglob("*.tsv")):
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
        total += seconds
        job = path.relative_to(folder).with_suffix("").as_posix()
        rule, _, wildcards = job.partition("/")
        body.append([f"`{rule}`", wildcards.replace("/", ", ") or "—", f"{seconds:,.1f} s"])
    body.append(["**sum**", "", f"**{total / 60:,.1f} min**"])
    return _table(["rule", "job", "wall time"], body)


RENDERERS: dict[str, Callable[[Path, list[str]], str]] = {
    "stage_times": stage_times,
    "columns": columns,
    "secv": secv,
    "tta": tta,
    "tta_ratio": tta_ratio,
    "agreement": agreement,
    "eval_switches": eval_switches,
    "bench": bench,
    "matmul_ratio": matmul_ratio,
    "levers": levers,
    "seeds": seeds,
    "ablation": ablation,
    "sensitivity": sensitivity,
    "trials": trials,
    "census": census,
    "noise": noise,
    "robustness": robustness,
}


# -- files ------------------------------------------------------------------------------------
def render_text(text: str, root: Path, *, where: str = "") -> str:
    """``text`` with every generated block rendered afresh from the tables under ``root``."""

    def one(match: re.Match) -> str:
        name, args = match["name"], match["args"].split()
        if name not in RENDERERS:
            raise ReportError(f"{where}: unknown block report:{name}; known: {sorted(RENDERERS)}")
        try:
            body = RENDERERS[name](root, args)
        except ReportError as err:
            raise ReportError(f"{where}: report:{name}: {err}") from None
        return f"{match['open']}{body.rstrip()}\n{match['close']}"

    _check_openings(text, where)
    return BLOCK.sub(one, text)


def _check_openings(text: str, where: str) -> None:
    """Every ``<!-- report:`` opens a block (its arguments and `` -->`` on one line, then a
    ``<!-- /report -->``): one that does not would be left as it is, silently stale."""
    starts = {m.start() for m in BLOCK.finditer(text)}
    for m in OPENING.finditer(text):
        if m.start() not in starts:
            line = text.count("\n", 0, m.start()) + 1
            opening = text[m.start() :].partition("\n")[0]
            raise ReportError(
                f"{where or 'text'}, line {line}: a report block that does not parse: "
                f"{opening!r}; write it as "
                "'<!-- report:NAME ARG ... -->', a line break, and a closing '<!-- /report -->'"
            )


def doc_files(root: Path) -> list[Path]:
    return [p for pattern in DOC_FILES for p in sorted(root.glob(pattern)) if p.is_file()]


def render(root: str | Path = ".", *, write: bool = True) -> list[Path]:
    """Render every block of :data:`DOC_FILES`; returns the files whose text changed (written
    only with ``write``)."""
    root = Path(root).resolve()
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        new = render_text(text, root, where=_rel(root, path))
        if new != text:
            changed.append(path)
            if write:
                path.write_text(new)
    return changed
