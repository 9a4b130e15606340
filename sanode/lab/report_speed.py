"""The lab's speed renderers: time to accuracy (a run's levels, ratios between runs, how its
validation agrees with the whole splits, evaluation product switches) and the bench tables."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..config import RENAMED
from ..pipeline.report_format import (
    ReportError,
    _buckets,
    _files,
    _int,
    _paths_and_options,
    _pct,
    _rel,
    _table,
)


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
    (path,) = _files(root, args[:1])
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
    from .bench_table import matmul_speeds

    (path,) = _files(root, args[:1])
    speed = matmul_speeds(json.loads(path.read_text()))
    return (
        f"Matmul speed in that run (medians of the measurements before each row): float32 "
        f"{speed['float32']:,.0f} GFLOP/s, bfloat16 {speed['bfloat16']:,.0f} GFLOP/s, ratio "
        f"**{speed['bfloat16'] / speed['float32']:.2f}**."
    )
