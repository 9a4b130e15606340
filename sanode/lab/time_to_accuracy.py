"""Time to accuracy: wall time from a fresh model to a validation H target (as MLPerf Training).

One run trains ``cfg`` from scratch on the training split (minus a stratified validation
split), validates after every epoch, and records the wall time of every epoch (training,
validation and checkpoint together). The time to accuracy is the cumulative wall time at the
end of the first epoch whose validation H reaches ``target``. The run completes its schedule
(``stop_at_target=False``) or stops there; either way the model it ends with is scored on the
full test split with the evaluation products (``eval_products``), and, optionally,
re-scored with each other product mode of a float32 loop (float32, bfloat16, bfloat16x2) to
count the items that change bucket and the final-state signs that flip.

The run is resumable: the checkpoint and the timeline (``timeline.json``) are written after
every epoch, so a killed run continues with its time so far. With ``audit`` every epoch's model
is also scored on the whole validation split and the whole test split, outside the timed wall
(the ``audit_s`` of each record): how far a validation subset (``val_per_class``) and
validation itself sit from the test set, epoch by epoch (:func:`agreement`). With
``trace_batches`` every training batch's diagnostics (loss, gamma, shares of eigenvalues and
states on their clips, gradient norm per block, Phi's condition number, the error of A's build)
go to ``batches.jsonl`` as well: what a collapse looks like batch by batch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..core.coupling import lapack_route
from ..core.gemm import gemm_route
from ..core.metrics import bucket_of
from ..core.model import SANode
from ..core.products import TWO_PARTS, Products
from ..data.prepare import load_prepared, prepare_dataset
from ..files import write_json
from ..runtime import matmul_precision
from ..training.evaluate import Evaluation, evaluate
from ..training.train import configure_threads, train

CHECKPOINT = "model.pt"
TIMELINE = "timeline.json"
BATCHES = "batches.jsonl"
"""With ``trace_batches``: one JSON line per training batch (:func:`batch_diagnostics`)."""
LEVELS = (0.90, 0.95, 0.96, 0.97, 0.98)
"""Validation H levels whose first epoch and wall time every result also reports."""


def first_reaching(timeline: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first epoch record whose ``val_accuracy`` is at least ``target``, or None."""
    return next((r for r in timeline if r.get("val_accuracy", -1.0) >= target), None)


def level_times(
    timeline: list[dict[str, float]], levels: tuple[float, ...]
) -> dict[str, dict[str, float] | None]:
    """For each level ``"0.960"``: the first epoch reaching it and its wall time, or None."""
    out: dict[str, dict[str, float] | None] = {}
    for level in sorted(set(levels)):
        rec = first_reaching(timeline, level)
        out[f"{level:.3f}"] = (
            None if rec is None else {"epoch": int(rec["epoch"]), "wall_s": rec["wall_s"]}
        )
    return out


def compare_evaluations(a: Evaluation, b: Evaluation, threshold: float) -> dict[str, Any]:
    """How two evaluations of the same items differ: bucket moves and final-sign flips."""
    moved = int((bucket_of(a.overlap, threshold) != bucket_of(b.overlap, threshold)).sum())
    flips = int((torch.sign(a.states) != torch.sign(b.states)).sum())
    return {
        "items": int(a.overlap.numel()),
        "items_changing_bucket": moved,
        "fraction_changing_bucket": moved / max(1, a.overlap.numel()),
        "sign_flips": flips,
        "signs": int(a.states.numel()),
    }


def _buckets(res: Evaluation) -> dict[str, Any]:
    return res.record(
        ("exact", "partial", "wrong", "accuracy", "nearest_accuracy", "work_fraction")
    )


def _score(
    model: SANode,
    cfg: TrainConfig,
    x,
    y,
    t_eval: float,
    tol: float | None,
    products: Products | str,
) -> Evaluation:
    """Evaluate with the products ``products`` (a value, or an ``eval_products`` name)."""
    with matmul_precision(cfg.matmul_precision):
        return evaluate(
            model,
            x,
            y,
            t_end=t_eval,
            dt=cfg.dt,
            method=cfg.method,
            batch_size=cfg.eval_batch_size,
            threshold=cfg.threshold,
            tol=tol,
            products=Products.parse(products, cfg.dtype),
        )


class Timeline:
    """The per-epoch records of a run (``timeline.json``): the epoch's metrics, its wall time
    ``epoch_s`` (training, validation and checkpoint) and the cumulative ``wall_s``. Written
    after every epoch; with ``resume`` (a checkpoint exists) the records so far are read
    back, so a killed run continues with its time so far."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        if resume and path.is_file():
            self.rows = json.loads(path.read_text())
        self.elapsed = self.rows[-1]["wall_s"] if self.rows else 0.0
        self.tick = time.perf_counter()

    def record(self, epoch: int, metrics: dict[str, float]) -> None:
        """Add 1-based ``epoch``'s record; an epoch repeated after a kill replaces its first."""
        now = time.perf_counter()
        self.elapsed += now - self.tick
        self.tick = now
        del self.rows[epoch - 1 :]
        before = self.rows[-1]["wall_s"] if self.rows else 0.0
        self.rows.append({**metrics, "epoch_s": self.elapsed - before, "wall_s": self.elapsed})
        write_json(self.path, self.rows, what="timeline", indent=1)

    def annotate(self, fields: dict[str, float]) -> None:
        """Add ``fields`` to the last record, leaving the time since :meth:`record` (the work
        that computed them) out of the wall time; it is recorded as the row's ``audit_s``."""
        self.rows[-1].update(fields)
        self.rows[-1]["audit_s"] = time.perf_counter() - self.tick
        write_json(self.path, self.rows, what="timeline", indent=1)
        self.tick = time.perf_counter()


class BatchTrace:
    """Appends one JSON line per training batch (``epoch``, ``batch`` and the batch's
    :func:`~sanode.training.train.batch_diagnostics`) to ``path``; the lines of epochs after
    the ``done`` ones (an epoch a killed run repeats) are dropped first."""

    def __init__(self, path: Path, *, done: int) -> None:
        self.path = path
        kept = []
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip() and json.loads(line)["epoch"] <= done:
                    kept.append(line + "\n")
        path.write_text("".join(kept))

    def __call__(self, epoch: int, batch: int, stats: dict[str, float]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({"epoch": epoch, "batch": batch, **stats}) + "\n")


def trace_summary(path: str | os.PathLike) -> list[dict[str, float]]:
    """One row per epoch of a batch trace (``batches.jsonl``): the batches, the loss (mean and
    max), gamma (first, min, max), the largest shares of eigenvalues and states on their clips,
    and each block's gradient norm (median and max over the epoch's batches)."""
    import statistics

    epochs: dict[int, list[dict[str, float]]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            epochs.setdefault(int(row["epoch"]), []).append(row)
    out = []
    for epoch, rows in sorted(epochs.items()):
        col = {key: [r[key] for r in rows] for key in rows[0]}
        summary = {
            "epoch": epoch,
            "batches": len(rows),
            "loss_mean": statistics.fmean(col["loss"]),
            "loss_max": max(col["loss"]),
            "gamma_first": col["gamma"][0],
            "gamma_min": min(col["gamma"]),
            "gamma_max": max(col["gamma"]),
            "eig_on_clip_max": max(col["eig_on_clip"]),
            "states_on_clip_max": max(col["states_on_clip"]),
        }
        for block in ("basis", "eig", "gamma"):
            norms = col[f"grad_{block}"]
            summary[f"grad_{block}_median"] = statistics.median(norms)
            summary[f"grad_{block}_max"] = max(norms)
        for key in ("basis_cond", "coupling_error"):  # traces from before they were recorded
            if key in col:
                summary[f"{key}_max"] = max(col[key])
        out.append(summary)
    return out


AUDIT_KEYS = ("audit_val_accuracy", "audit_test_accuracy")
"""The scores ``audit`` adds to every epoch record: whole validation split, whole test split."""


def agreement(timeline: list[dict[str, float]]) -> dict[str, Any] | None:
    """How the per-epoch validation H (``val_accuracy``: the split or subset the run validated
    on) agrees with the audit's whole validation split and whole test split: the mean and
    largest absolute differences in points over the audited epochs, and the first epoch and
    wall time at which each of them reaches each level of :data:`LEVELS`. None without audited
    epochs."""
    rows = [r for r in timeline if all(k in r for k in AUDIT_KEYS) and "val_accuracy" in r]
    if not rows:
        return None

    def gaps(a: str, b: str) -> dict[str, float]:
        d = [100.0 * abs(r[a] - r[b]) for r in rows]
        return {"mean_points": sum(d) / len(d), "max_points": max(d)}

    def levels(key: str) -> dict[str, dict[str, float] | None]:
        return level_times([{**r, "val_accuracy": r[key]} for r in rows], LEVELS)

    return {
        "epochs": len(rows),
        "val_vs_whole_val": gaps("val_accuracy", "audit_val_accuracy"),
        "val_vs_test": gaps("val_accuracy", "audit_test_accuracy"),
        "whole_val_vs_test": gaps("audit_val_accuracy", "audit_test_accuracy"),
        "levels": {
            "val": levels("val_accuracy"),
            "whole_val": levels("audit_val_accuracy"),
            "test": levels("audit_test_accuracy"),
        },
    }


def _switch(
    model: SANode,
    cfg: TrainConfig,
    x,
    y,
    t_eval: float,
    tol: float | None,
    own: Evaluation,
    products: str,
) -> dict[str, Any]:
    """The test scores with the products ``products`` instead, and what moved against
    ``own`` (the evaluation with the run's own products)."""
    switched = _score(model, cfg, x, y, t_eval, tol, products)
    return {
        "eval_products": products,
        "test": _buckets(switched),
        **compare_evaluations(own, switched, cfg.threshold),
    }


def time_to_accuracy(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    target: float = 0.97,
    val_fraction: float = 0.1,
    stop_at_target: bool = False,
    t_test: float = 120.0,
    test_tol: float | None = 1e-4,
    compare_dtypes: bool = True,
    data_path: str | os.PathLike | None = None,
    progress: bool = True,
    trace_batches: bool = False,
    audit: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` from scratch in ``out_dir`` and return (and write ``result.json``) the
    time to ``target`` validation H, the epoch it was reached, and the final test scores.

    Args:
        data_path: a prepared data cache (:func:`sanode.data.prepare.prepare_dataset`) to reuse;
            default: prepared into ``out_dir/data.pt`` once.
        t_test, test_tol: horizon and early-exit tolerance of the final test evaluation.
        compare_dtypes: also score the final model (float32 loop) with each other product
            mode (float32, bfloat16, bfloat16x2) and report the bucket moves and sign flips.
        trace_batches: write every batch's diagnostics to ``out_dir/batches.jsonl`` (the
            lines of epochs a killed run repeats are replaced).
        audit: after every epoch, score its model on the whole validation split (the
            validation's horizon, tolerance and products) and the whole test split (``t_test``,
            ``test_tol``), outside the timed wall; the result's ``agreement`` compares them
            with the run's own validation. (With ``train_on_validation`` the validation split
            is trained on, so only the test split is held out.)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_threads(cfg.threads)
    if data_path is None:
        data_path = out_dir / "data.pt"
        if not Path(data_path).is_file():
            prepare_dataset(cfg, data_path, val_fraction=val_fraction)
    data = load_prepared(data_path)
    x, y = data.split("train")
    xv, yv = data.split("val")
    timeline = Timeline(out_dir / TIMELINE, resume=(out_dir / CHECKPOINT).is_file())

    xt, yt = data.split("test")
    # what the settings mean here (auto: measured); the model is built with the same value
    precision = cfg.precision(data.patterns.shape[1])
    own = precision.eval

    def record(epoch: int, metrics: dict[str, float], model) -> bool:
        timeline.record(epoch, metrics)
        if audit:
            whole_val = _score(model, cfg, xv, yv, cfg.t_eval, cfg.eval_tol, own)
            test = _score(model, cfg, xt, yt, t_test, test_tol, own)
            timeline.annotate(
                dict(zip(AUDIT_KEYS, (whole_val.accuracy, test.accuracy), strict=True))
            )
        return stop_at_target and metrics.get("val_accuracy", 0.0) >= target

    trace = BatchTrace(out_dir / BATCHES, done=len(timeline.rows)) if trace_batches else None
    result = train(
        cfg,
        x,
        y,
        data.patterns,
        val=(xv, yv),
        checkpoint_path=out_dir / CHECKPOINT,
        resume=True,
        callback=record,
        progress=progress,
        batch_callback=trace,
        precision=precision,
    )
    model = result.model
    test = _score(model, cfg, xt, yt, t_test, test_tol, own)
    rows = timeline.rows
    reached = first_reaching(rows, target)
    summary: dict[str, Any] = {
        "dataset": cfg.dataset,
        "train_products": precision.train.name,
        "eval_products": own.name,
        "precision": precision.record(),
        "target_val_accuracy": target,
        "time_to_target_s": None if reached is None else reached["wall_s"],
        "epochs_to_target": None if reached is None else int(reached["epoch"]),
        "epochs_run": len(rows),
        "train_wall_s": rows[-1]["wall_s"] if rows else 0.0,
        "best_val_accuracy": max((r.get("val_accuracy", 0.0) for r in rows), default=0.0),
        "levels": level_times(rows, (*LEVELS, target)),
        "test": {"t_eval": t_test, "tol": test_tol, "n": len(yt), **_buckets(test)},
        "threads": torch.get_num_threads(),
        "lapack": lapack_route(model.gamma.device, torch.float32, precision.lapack),  # A's solves
        # the training products' route at this N (sanode.core.gemm)
        "gemm": gemm_route(
            model.gamma.device, torch.float32, model.num_nodes**2, precision.train.route
        ),
        # the seed the model comes from: cfg.seed, or a later one where seeds stalled
        "trained_seed": cfg.seed + len(result.stalled_seeds),
        "stalled_seeds": result.stalled_seeds,
        "config": cfg.to_dict(),
        "timeline": rows,
    }
    if audit:
        summary["agreement"] = agreement(rows)
    if trace_batches:  # the trace per epoch (the batch lines stay in batches.jsonl)
        summary["batch_trace"] = trace_summary(out_dir / BATCHES)
    if compare_dtypes and model.dtype == torch.float32:
        summary["eval_switches"] = [
            _switch(model, cfg, xt, yt, t_test, test_tol, test, other)
            for other in ("float32", "bfloat16", TWO_PARTS)
            if other != own.name
        ]
    write_json(out_dir / "result.json", summary, what="result")
    return summary
