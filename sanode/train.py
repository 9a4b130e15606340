"""Training loop: Adam on the MSE to the target attractor, fresh seeded noise every epoch.

Resuming from a checkpoint reproduces the uninterrupted run exactly: everything random in
an epoch (shuffle and training noise) comes from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, model_from_config, save_checkpoint
from .config import TrainConfig, matmul_precision, resolve_device
from .evaluate import evaluate
from .model import SANode
from .noise import add_pixel_noise

EpochCallback = Callable[[int, dict[str, float], SANode], Any]


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN/inf; the last good checkpoint is untouched."""


@dataclass
class TrainResult:
    model: SANode
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of everything random in one epoch (shuffle, noise)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def ortho_loss(basis: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal entry of the Gram matrix of the unit-normalised columns."""
    unit = basis / basis.norm(dim=0, keepdim=True)
    gram = unit.T @ unit
    m = gram.shape[0]
    off = gram - torch.eye(m, dtype=gram.dtype, device=gram.device)
    return (off**2).sum() / max(m * (m - 1), 1)


def configure_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def train(
    cfg: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    patterns: torch.Tensor,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    callback: EpochCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train an SA-nODE on images x (M, N) with labels y (M,) towards ``patterns`` (K, N).

    Every epoch draws training noise at ``cfg.eps_train`` afresh, runs Adam over shuffled
    mini-batches, optionally evaluates ``val`` at ``cfg.t_eval`` and writes the checkpoint
    (model, optimiser, config, epoch, history). With ``resume`` an existing checkpoint is
    continued. ``callback(epoch, metrics, model)`` runs after each epoch, before that epoch's
    checkpoint is written; a truthy return stops training.

    Raises:
        DivergenceError: a non-finite loss or parameter; the last checkpoint is kept.
    """
    configure_threads(cfg.threads)
    with matmul_precision(cfg.matmul_precision):
        return _train(cfg, x, y, patterns, val, checkpoint_path, resume, callback, progress)


def _train(cfg, x, y, patterns, val, checkpoint_path, resume, callback, progress) -> TrainResult:
    device = resolve_device(cfg.device)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (M, N) and y (M,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if int(y.max()) >= patterns.shape[0] or int(y.min()) < 0:
        raise ValueError(f"labels must lie in [0, {patterns.shape[0]}), got [{y.min()}, {y.max()}]")
    model = model_from_config(cfg, patterns).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if checkpoint_path is not None and resume and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path, map_location=device)
        # a key the checkpoint predates had its default value then
        saved = {**TrainConfig().to_dict(), **state["config"]}
        saved = {k: v for k, v in saved.items() if k not in _RESUMABLE}
        current = {k: v for k, v in cfg.to_dict().items() if k not in _RESUMABLE}
        if saved != current:
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise ValueError(
                f"checkpoint {checkpoint_path} was written with different settings {diff}; "
                "delete it or pass resume=False to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
    targets_all = patterns.to(torch.float64)
    stopped = False
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        initial=start_epoch,
        total=cfg.epochs,
        desc=f"train {cfg.dataset}",
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        gen = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(x), generator=gen)
        x_epoch = add_pixel_noise(x[order], cfg.eps_train, gen)
        y_epoch = y[order]
        total, count = 0.0, 0
        for start in range(0, len(x_epoch), cfg.batch_size):
            xb = x_epoch[start : start + cfg.batch_size].to(device)
            yb = y_epoch[start : start + cfg.batch_size]
            target = targets_all[yb].to(device=device, dtype=model.dtype)
            optimizer.zero_grad(set_to_none=True)
            out = model(xb, cfg.t_train, cfg.dt, method=cfg.method, grad_segment=cfg.grad_segment)
            loss = torch.nn.functional.mse_loss(out, target)
            if cfg.ortho_penalty:
                loss = loss + cfg.ortho_penalty * ortho_loss(model.basis_free)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DivergenceError(
                    f"loss became {value} in epoch {epoch + 1}, batch {start // cfg.batch_size + 1}"
                    f"; try a smaller lr (now {cfg.lr}) or dt (now {cfg.dt}). "
                    + ("The last good checkpoint is kept." if checkpoint_path else "")
                )
            loss.backward()
            optimizer.step()
            total += value * len(xb)
            count += len(xb)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise DivergenceError(f"a parameter became non-finite in epoch {epoch + 1}; lower lr")
        record: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        record["gamma"] = float(model.gamma.detach())
        if val is not None:
            result = evaluate(
                model,
                val[0],
                val[1],
                t_end=cfg.t_eval,
                dt=cfg.dt,
                method=cfg.method,
                batch_size=cfg.eval_batch_size,
                threshold=cfg.threshold,
            )
            record.update(result.summary("val_"))
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        # the callback runs before the checkpoint is written: a crash between the two repeats
        # (deterministically) an epoch the callback has seen, it never skips one
        stop = bool(callback(epoch + 1, record, model)) if callback is not None else False
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "config": cfg.to_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                },
            )
        if stop:
            stopped = True
            break
    bar.close()
    return TrainResult(model=model, history=history, stopped_early=stopped)


# Settings that may change between a run and its resumption without changing its result so far.
_RESUMABLE = {
    "epochs",
    "device",
    "threads",
    "eval_batch_size",
    "data_root",
    "mirror",
    "grad_segment",
}
