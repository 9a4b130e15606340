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
from .config import EXECUTION_KEYS, TrainConfig, matmul_precision, resolve_device
from .evaluate import evaluate
from .model import SANode
from .noise import add_pixel_noise, epoch_generator

EpochCallback = Callable[[int, dict[str, float], SANode], Any]


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN/inf; the last good checkpoint is untouched."""


@dataclass
class TrainResult:
    model: SANode
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


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
    mini-batches (:func:`epoch_batches`: ``ceil(M / batch_size)`` of nearly equal size, never
    a small remainder batch), optionally evaluates ``val`` at ``cfg.t_eval`` and writes the
    checkpoint (model, optimiser, config, epoch, history). With ``resume`` an existing checkpoint is
    continued. ``callback(epoch, metrics, model)`` runs after each epoch, after that epoch's
    checkpoint is written; a truthy return stops training.

    Raises:
        DivergenceError: a non-finite loss, a non-finite or exploding parameter, or an epoch
            loss over ``divergence_factor`` times the first batch's; the last checkpoint (the
            last sane epoch) is kept.
    """
    configure_threads(cfg.threads)
    with matmul_precision(cfg.matmul_precision):
        return _train(cfg, x, y, patterns, val, checkpoint_path, resume, callback, progress)


def epoch_batches(n_items: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the ``ceil(n_items / batch_size)`` mini-batches of an epoch, sizes
    differing by at most one (54,001 items in batches of 200: 72 of 200 and 199 of 199).

    Slicing off full batches would leave a remainder batch of as little as one item (MNIST's
    stratified 10 % validation split leaves 54,001 training images); Adam takes a full-size
    step on its one-image gradient, and near the peak of a one-cycle schedule that step broke
    the MNIST recipe with eps_train 0.1: validation H 0.59 -> 0.003, then a 10^9 gradient in
    the next batch (states on the clip, where explicit Euler is unstable) that froze Adam
    (README, *Training recipe*). Where ``batch_size`` divides ``n_items`` the batches are the
    plain slices.
    """
    if n_items < 1 or batch_size < 1:
        raise ValueError(f"need n_items >= 1 and batch_size >= 1, got {n_items}, {batch_size}")
    count = math.ceil(n_items / batch_size)
    base, extra = divmod(n_items, count)
    bounds, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def make_optimizer(cfg: TrainConfig, model: SANode) -> torch.optim.Adam:
    """Adam with one parameter group per block (eigenvectors, eigenvalues, gamma), each at
    ``lr`` times its multiplier."""
    groups = [
        {"params": [model.basis_free], "lr": cfg.lr * cfg.lr_basis_mult, "name": "basis"},
        {"params": [model.eig_free], "lr": cfg.lr * cfg.lr_eig_mult, "name": "eig"},
        {"params": [model.gamma], "lr": cfg.lr * cfg.lr_gamma_mult, "name": "gamma"},
    ]
    return torch.optim.Adam(groups, lr=cfg.lr)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The per-step learning-rate schedule over ``epochs * steps_per_epoch`` optimiser steps.

    ``constant``: lr throughout (after an optional linear warm-up over ``lr_warmup`` of the
    steps); ``cosine``: linear warm-up, then cosine decay to ``lr_final * lr``; ``onecycle``:
    :class:`torch.optim.lr_scheduler.OneCycleLR` (warm-up from lr/25 over ``lr_warmup`` of the
    steps, cosine annealing to ``lr_final * lr`` or lr/1e4, Adam's beta1 cycled 0.95 -> 0.85).
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.lr_schedule == "onecycle":
        peaks = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peaks,
            total_steps=total,
            pct_start=cfg.lr_warmup,
            final_div_factor=(1 / (25 * cfg.lr_final)) if cfg.lr_final > 0 else 1e4,
        )
    warm = round(cfg.lr_warmup * total)
    cosine = cfg.lr_schedule == "cosine"

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def parameters_sane(model: SANode, limit: float = 1e8) -> str | None:
    """``None`` if every parameter and the coupling A are finite and below ``limit`` in size;
    else a description of what is not."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not torch.isfinite(p).all():
                return f"parameter {name} is not finite"
            if p.abs().max() > limit:
                return f"parameter {name} reached {float(p.abs().max()):.3g} (> {limit:g})"
        coupling = model.coupling()
        if not torch.isfinite(coupling).all():
            return "the coupling matrix A is not finite (ill-conditioned eigenvectors)"
    return None


def _train(cfg, x, y, patterns, val, checkpoint_path, resume, callback, progress) -> TrainResult:
    device = resolve_device(cfg.device)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (M, N) and y (M,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if int(y.max()) >= patterns.shape[0] or int(y.min()) < 0:
        raise ValueError(f"labels must lie in [0, {patterns.shape[0]}), got [{y.min()}, {y.max()}]")
    model = model_from_config(cfg, patterns).to(device)
    optimizer = make_optimizer(cfg, model)
    batches = epoch_batches(len(x), cfg.batch_size)
    scheduler = make_scheduler(cfg, optimizer, len(batches))
    history: list[dict[str, float]] = []
    start_epoch = 0
    initial_loss: float | None = None
    if checkpoint_path is not None and resume and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path, map_location=device)
        # a key the checkpoint predates had its default value then
        saved = {**TrainConfig().to_dict(), **state["config"]}
        resumable = _resumable(cfg)
        saved = {k: v for k, v in saved.items() if k not in resumable}
        current = {k: v for k, v in cfg.to_dict().items() if k not in resumable}
        if saved != current:
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise ValueError(
                f"checkpoint {checkpoint_path} was written with different settings {diff}; "
                "delete it or pass resume=False to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        initial_loss = state.get("initial_loss")
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
    kept = "The last good checkpoint is kept." if checkpoint_path else ""
    for epoch in bar:
        gen = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(x), generator=gen)
        x_epoch = add_pixel_noise(x[order], cfg.eps_train, gen)
        y_epoch = y[order]
        total, count = 0.0, 0
        grad_max = torch.zeros((), dtype=torch.float64, device=device)
        for index, (start, stop) in enumerate(batches):
            xb = x_epoch[start:stop].to(device)
            yb = y_epoch[start:stop]
            target = targets_all[yb].to(device=device, dtype=model.dtype)
            optimizer.zero_grad(set_to_none=True)
            out = model(xb, cfg.t_train, cfg.dt, method=cfg.method, grad_segment=cfg.grad_segment)
            loss = torch.nn.functional.mse_loss(out, target)
            if cfg.ortho_penalty:
                loss = loss + cfg.ortho_penalty * ortho_loss(model.basis_free)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DivergenceError(
                    f"loss became {value} in epoch {epoch + 1}, batch {index + 1}"
                    f"; try a smaller lr (now {cfg.lr}) or dt (now {cfg.dt}). {kept}"
                )
            if initial_loss is None:
                initial_loss = value
            loss.backward()
            # the gradient's norm (before any clipping): an epoch of zeros stops training below
            if cfg.grad_clip_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            else:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads) if grads else grad_max
            grad_max = torch.maximum(grad_max, norm.to(grad_max.dtype))
            optimizer.step()
            scheduler.step()
            total += value * len(xb)
            count += len(xb)
        problem = parameters_sane(model)
        if problem is not None:
            raise DivergenceError(
                f"{problem} after epoch {epoch + 1}; lower lr (now {cfg.lr}). {kept}"
            )
        if float(grad_max) == 0.0 and total > 0.0:  # (a perfect fit has zero gradients too)
            raise DivergenceError(
                f"every gradient was zero in epoch {epoch + 1}: the model stopped learning (its "
                "states sit where the state clip cuts the gradient, e.g. after a too large step); "
                f"try a smaller lr (now {cfg.lr}). {kept}"
            )
        record: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if (
            cfg.divergence_factor is not None
            and initial_loss
            and record["train_loss"] > cfg.divergence_factor * initial_loss
        ):
            raise DivergenceError(
                f"the mean training loss of epoch {epoch + 1} ({record['train_loss']:.4g}) is over "
                f"{cfg.divergence_factor:g}x the first batch's ({initial_loss:.4g}); try a smaller "
                f"lr (now {cfg.lr}) or set divergence_factor. {kept}"
            )
        record["gamma"] = float(model.gamma.detach())
        record["learning_rate"] = float(optimizer.param_groups[0]["lr"])
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
                tol=cfg.eval_tol,
                product_dtype=cfg.torch_eval_matmul_dtype,
                split_products=cfg.eval_split_products,
            )
            record.update(result.summary("val_"))
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        # the checkpoint is written before the callback: a scheduler that stops the run inside
        # the callback (Tune's ASHA at tune.report) keeps every epoch it finished
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "config": cfg.to_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "initial_loss": initial_loss,
                },
            )
        stop = bool(callback(epoch + 1, record, model)) if callback is not None else False
        if stop:
            stopped = True
            break
    bar.close()
    return TrainResult(model=model, history=history, stopped_early=stopped)


def _resumable(cfg: TrainConfig) -> set[str]:
    """Settings that may change between a run and its resumption without changing its result
    so far; ``epochs`` only under a constant schedule (else the schedule's length changes)."""
    if cfg.lr_schedule == "constant" and not cfg.lr_warmup:
        return _RESUMABLE | {"epochs"}
    return _RESUMABLE


# Settings that may change between a run and its resumption without changing its result so far.
_RESUMABLE = set(EXECUTION_KEYS)
