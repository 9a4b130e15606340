"""Training loop: Adam on the MSE to the target attractor, fresh seeded noise every epoch.

Resuming from a checkpoint reproduces the uninterrupted run exactly: everything random in
an epoch (shuffle and training noise) comes from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import files
from ..config import EXECUTION_KEYS, TrainConfig, renamed
from ..core.model import SANode
from ..core.noise import add_pixel_noise, augment_generator, epoch_generator
from ..core.precision import Precision
from ..data.augment import image_side, shift_images
from ..data.raw import balanced_subset
from ..runtime import matmul_precision, resolve_device
from .checkpoint import load_checkpoint, model_from_config, save_checkpoint
from .evaluate import evaluate
from .losses import final_state_loss
from .memory import keep_freed_memory

EpochCallback = Callable[[int, dict[str, float], SANode], Any]
BatchCallback = Callable[[int, int, dict[str, float]], Any]


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN/inf; the last good checkpoint is untouched."""


class CollapseError(DivergenceError):
    """Validation H collapsed and stayed down (after the allowed rollbacks); the checkpoint
    holds the best validated epoch."""


class StallError(DivergenceError):
    """Validation H stayed under ``stall_floor`` for ``stall_epochs`` epochs: the run never
    started learning; the checkpoint holds the epoch before."""


@dataclass
class TrainResult:
    model: SANode
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    stalled_seeds: list[int] = field(default_factory=list)  # seeds that stalled first


def ortho_loss(basis: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal entry of the Gram matrix of the unit-normalised columns."""
    unit = basis / basis.norm(dim=0, keepdim=True)
    gram = unit.T @ unit
    m = gram.shape[0]
    off = gram - torch.eye(m, dtype=gram.dtype, device=gram.device)
    return (off**2).sum() / max(m * (m - 1), 1)


def configure_threads(threads: int | None) -> None:
    """Set torch's thread count (None: leave it) and keep freed memory for reuse
    (:func:`sanode.training.memory.keep_freed_memory`), as every training run does."""
    keep_freed_memory()
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
    batch_callback: BatchCallback | None = None,
    precision: Precision | None = None,
) -> TrainResult:
    """Train an SA-nODE on images x (M, N) with labels y (M,) towards ``patterns`` (K, N).

    Every epoch draws training noise at ``cfg.eps_train`` afresh, runs Adam over shuffled
    mini-batches (:func:`epoch_batches`: ``ceil(M / batch_size)`` of nearly equal size, never
    a small remainder batch), optionally evaluates ``val`` at ``cfg.t_eval`` and writes the
    checkpoint (model, optimiser, config, epoch, history). With ``resume`` an existing checkpoint is
    continued. ``callback(epoch, metrics, model)`` runs after each epoch, after that epoch's
    checkpoint is written; a truthy return stops training.

    The levers of ``cfg``: the loss on x(T) (``loss``, :mod:`sanode.training.losses`), the horizon
    schedule (``t_train_final`` for the last ``t_train_final_epochs``), random shifts of the
    training images (``augment_shift``, :mod:`sanode.data.augment`), weight averaging
    (``ema_decay``: the raw and the averaged weights are validated, the better is the model
    returned and loaded from the checkpoint), the final fit (``train_on_validation``) and the
    collapse check (``collapse_*``: validation H far under its best restores the best epoch
    and lowers the lr, or stops). ``batch_callback(epoch, batch, stats)`` receives
    :func:`batch_diagnostics` after every backward pass (for studying a collapse).
    ``precision``: the run's products, routes and solves (default ``cfg.precision(N)``,
    measured where the settings say auto), recorded in the checkpoint.

    Raises:
        DivergenceError: a non-finite loss, a non-finite or exploding parameter, or an epoch
            loss over ``divergence_factor`` times the first batch's; the last checkpoint (the
            last sane epoch) is kept.
        CollapseError: validation H collapsed with no rollback left (``collapse_action``);
            the checkpoint holds the best validated epoch.
        StallError: validation H stayed under ``stall_floor`` for ``stall_epochs`` epochs,
            and so did every one of the ``stall_reseeds`` restarts (seed + 1 each); every
            stalled run's checkpoint is kept as ``<stem>.stalled-seed=<s>.pt``.
    """
    configure_threads(cfg.threads)
    reseeds = _Reseeds(cfg, checkpoint_path, resume)
    with matmul_precision(cfg.matmul_precision):
        while True:
            run_cfg = cfg.replace(seed=reseeds.seed)
            try:
                result = _train(
                    run_cfg,
                    x,
                    y,
                    patterns,
                    val,
                    checkpoint_path,
                    resume or reseeds.stalled > 0,
                    callback,
                    progress,
                    batch_callback,
                    precision,
                )
            except StallError as err:
                if reseeds.stalled >= cfg.stall_reseeds:
                    raise
                reseeds.set_aside(err)
                continue
            result.stalled_seeds = reseeds.stalled_seeds()
            return result


class _Reseeds:
    """The seeds a run has stalled with (``stall_reseeds``): a stalled run starts over with the
    next seed. With a checkpoint, each stalled seed leaves ``<stem>.stalled-seed=<s>.pt`` (its
    checkpoint) and ``.txt`` (why) beside it, so a resumed run continues with the right seed;
    ``resume=False`` removes them."""

    def __init__(self, cfg: TrainConfig, checkpoint_path, resume: bool) -> None:
        self.base = cfg.seed
        self.path = None if checkpoint_path is None else Path(checkpoint_path)
        self.stalled = 0
        if self.path is None:
            return
        for record in self.path.parent.glob(f"{self.path.stem}.stalled-seed=*.txt"):
            if resume:
                self.stalled += 1
            else:
                record.unlink()
                record.with_suffix(".pt").unlink(missing_ok=True)

    @property
    def seed(self) -> int:
        return self.base + self.stalled

    def stalled_seeds(self) -> list[int]:
        return [self.base + i for i in range(self.stalled)]

    def set_aside(self, err: StallError) -> None:
        """Keep the stalled run's checkpoint and reason under its seed; the next seed starts."""
        if self.path is not None:
            aside = self.path.with_name(f"{self.path.stem}.stalled-seed={self.seed}.pt")
            if self.path.is_file():
                os.replace(self.path, aside)
            files.write_text(aside.with_suffix(".txt"), str(err), what="stall record")
        tqdm.write(f"seed {self.seed} stalled ({err}); starting over with seed {self.seed + 1}")
        self.stalled += 1


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
    return adam(groups, lr=cfg.lr)


FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(params: Iterable[Any], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel a parameter where the parameters' device has it (CPU, CUDA):
    the same update to float rounding (relative 1e-16 in float64), in a quarter of the time
    of the per-tensor loop here (0.35 ms against 1.3-1.6 ms a step for the 614k float64
    eigenvector entries of MNIST, 2 cores)."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(p.device.type in FUSED_ADAM_DEVICES for p in tensors) or None
    return torch.optim.Adam(groups, lr=lr, fused=fused)


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


def _check_inputs(
    x: torch.Tensor, y: torch.Tensor, patterns: torch.Tensor, augment_shift: int = 0
) -> None:
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (M, N) and y (M,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if augment_shift and augment_shift >= image_side(x.shape[1]):
        raise ValueError(
            f"augment_shift {augment_shift} must be below the image side "
            f"{image_side(x.shape[1])}; set a smaller augment_shift"
        )
    if int(y.max()) >= patterns.shape[0] or int(y.min()) < 0:
        raise ValueError(f"labels must lie in [0, {patterns.shape[0]}), got [{y.min()}, {y.max()}]")


class _Run:
    """The state of one training run and its steps: resume, one epoch, the checks, validation,
    weight averaging, the collapse check, save. A new training lever joins one of them."""

    def __init__(
        self, cfg, x, y, patterns, val, checkpoint_path, batch_callback, precision=None
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.train_on_validation and val is not None:
            x, y = torch.cat([x, val[0]]), torch.cat([y, val[1]])
        if cfg.val_per_class is not None and val is not None:
            keep = balanced_subset(val[1], cfg.val_per_class, seed=cfg.seed)
            val = (val[0][keep], val[1][keep])
        self.x, self.y, self.val = x, y, val
        self.path = checkpoint_path
        self.batch_callback = batch_callback
        self.model = model_from_config(cfg, patterns, precision).to(self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        self.batches = epoch_batches(len(x), cfg.batch_size)
        self.scheduler = make_scheduler(cfg, self.optimizer, len(self.batches))
        self.ema = averaged_model(self.model, cfg.ema_decay)
        self.targets = patterns.to(device=self.device, dtype=torch.float64)
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.initial_loss: float | None = None
        self.lr_scale = 1.0  # lowered by each collapse rollback
        self.rollbacks = 0
        self.low_epochs = 0  # epochs in a row under the collapse floor
        self.best: dict[str, Any] | None = None  # the best validated epoch's state
        self.kept = "The last good checkpoint is kept." if checkpoint_path else ""

    # -- resume and save ---------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from the checkpoint, if one exists; refuse one of other settings."""
        cfg, path = self.cfg, self.path
        if path is None or not Path(path).is_file():
            return
        state = load_checkpoint(path, map_location=self.device)
        # a key the checkpoint predates had its default value then
        # (and a renamed key its old name: read under the new one)
        saved = {**TrainConfig().to_dict(), **renamed(state["config"], warn=False)}
        resumable = _resumable(cfg)
        saved = {k: v for k, v in saved.items() if k not in resumable}
        current = {k: v for k, v in cfg.to_dict().items() if k not in resumable}
        if saved != current:
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise ValueError(
                f"checkpoint {path} was written with different settings {diff}; "
                "delete it or start over (sanode train --no-resume; train(..., resume=False))"
            )
        self._load_state(state)
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"])
        self.initial_loss = state.get("initial_loss")
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.low_epochs = int(state.get("low_epochs", 0))
        self.best = state.get("best")

    def _state(self) -> dict[str, Any]:
        """Everything a resumed run continues from (weights, optimiser, schedule, average)."""
        out = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        return out

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def save(self, epoch: int) -> None:
        """Write the checkpoint of the run after ``epoch`` (1-based) epochs, atomically."""
        if self.path is None:
            return
        payload = {
            **self._state(),
            "config": self.cfg.to_dict(),
            "epoch": epoch,
            "history": self.history,
            "initial_loss": self.initial_loss,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "low_epochs": self.low_epochs,
            "weights": self.selected_weights(),
            # what the precision settings meant on the machine that trained (auto resolved,
            # with the times measured for it)
            "precision": self.model.precision.record(),
        }
        if self.ema is not None:
            payload["ema_model"] = self.ema.module.state_dict()
        if self.best is not None:
            payload["best"] = self.best
        save_checkpoint(self.path, payload)

    def selected_weights(self) -> str:
        """``"ema"`` when the averaged weights validated at least as well as the raw ones in
        the last epoch, else ``"raw"`` (what :func:`sanode.training.checkpoint.load_model`
        loads)."""
        last = self.history[-1] if self.history else {}
        return "ema" if last.get("weights_ema") == 1.0 else "raw"

    def final_model(self) -> SANode:
        """The model the run ends with: raw or averaged weights (:meth:`selected_weights`)."""
        if self.ema is not None and self.selected_weights() == "ema":
            return self.ema.module
        return self.model

    # -- one epoch ---------------------------------------------------------------------------
    def epoch(self, epoch: int) -> dict[str, float]:
        """Adam over the shuffled, freshly noised mini-batches of 0-based ``epoch``."""
        cfg, model, device = self.cfg, self.model, self.device
        gen = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(self.x), generator=gen)
        x_epoch = self.x[order]
        if cfg.augment_shift:
            x_epoch = shift_images(x_epoch, cfg.augment_shift, augment_generator(cfg.seed, epoch))
        x_epoch = add_pixel_noise(x_epoch, cfg.eps_train, gen)
        y_epoch = self.y[order]
        t_train = cfg.horizon(epoch)
        horizons = cfg.batch_horizons(epoch, len(self.batches))
        total, count = 0.0, 0
        grad_max = torch.zeros((), dtype=torch.float64, device=device)
        for index, (start, stop) in enumerate(self.batches):
            xb = x_epoch[start:stop].to(device)
            yb = y_epoch[start:stop].to(device)
            self.optimizer.zero_grad(set_to_none=True)
            t_batch = horizons[index]
            out = model(
                xb,
                t_batch,
                cfg.dt,
                method=cfg.method,
                grad_segment=cfg.grad_segment,
                fuse_steps=cfg.fuse_steps,
            )
            loss = final_state_loss(
                out,
                self.targets,
                yb,
                a=cfg.a,
                kind=cfg.loss,
                temperature=cfg.loss_temperature,
                margin=cfg.loss_margin,
                mse_weight=cfg.loss_mse_weight,
            )
            if cfg.ortho_penalty:
                loss = loss + cfg.ortho_penalty * ortho_loss(model.basis_free)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DivergenceError(
                    f"loss became {value} in epoch {epoch + 1}, batch {index + 1}"
                    f"; try a smaller lr (now {cfg.lr}) or dt (now {cfg.dt}). {self.kept}"
                )
            if self.initial_loss is None:
                self.initial_loss = value
            loss.backward()
            if self.batch_callback is not None:
                self.batch_callback(epoch + 1, index + 1, batch_diagnostics(model, out, value))
            # the gradient's norm (before any clipping): an epoch of zeros stops training below
            if cfg.grad_clip_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            else:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads) if grads else grad_max
            grad_max = torch.maximum(grad_max, norm.to(grad_max.dtype))
            self.optimizer.step()
            self.scheduler.step()
            self._scale_lr()
            if self.ema is not None:
                self.ema.update_parameters(model)
            total += value * len(xb)
            count += len(xb)
        record: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        self.check(epoch, record, float(grad_max), total)
        record["gamma"] = float(model.gamma.detach())
        record["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        record["t_train"] = t_train
        return record

    def _scale_lr(self) -> None:
        """The schedules set each group's lr afresh every step; a rollback's factor follows."""
        if self.lr_scale != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.lr_scale

    # -- checks --------------------------------------------------------------------------------
    def check(self, epoch: int, record: dict[str, float], grad_max: float, total: float) -> None:
        """Divergence checks after an epoch: parameters, all-zero gradients, the loss."""
        cfg, kept = self.cfg, self.kept
        problem = parameters_sane(self.model)
        if problem is not None:
            raise DivergenceError(
                f"{problem} after epoch {epoch + 1}; lower lr (now {cfg.lr}). {kept}"
            )
        if grad_max == 0.0 and total > 0.0:  # (a perfect fit has zero gradients too)
            raise DivergenceError(
                f"every gradient was zero in epoch {epoch + 1}: the model stopped learning (its "
                "states sit where the state clip cuts the gradient, e.g. after a too large step); "
                f"try a smaller lr (now {cfg.lr}). {kept}"
            )
        if (
            cfg.divergence_factor is not None
            and self.initial_loss
            and record["train_loss"] > cfg.divergence_factor * self.initial_loss
        ):
            raise DivergenceError(
                f"the mean training loss of epoch {epoch + 1} ({record['train_loss']:.4g}) is over "
                f"{cfg.divergence_factor:g}x the first batch's ({self.initial_loss:.4g}); try a "
                f"smaller lr (now {cfg.lr}) or set divergence_factor. {kept}"
            )

    # -- validation and weight averaging -------------------------------------------------------
    def validate(self, record: dict[str, float]) -> None:
        """Validation H of the raw weights and, with ``ema_decay``, of the averaged ones; the
        ``val_*`` metrics are those of the better (the model the checkpoint hands out)."""
        if self.val is None:
            return
        raw = self._evaluate(self.model)
        if self.ema is None:
            record.update(raw.summary("val_"))
            return
        averaged = self._evaluate(self.ema.module)
        use_ema = averaged.accuracy >= raw.accuracy
        record.update((averaged if use_ema else raw).summary("val_"))
        record["val_accuracy_raw"] = raw.accuracy
        record["val_accuracy_ema"] = averaged.accuracy
        record["weights_ema"] = 1.0 if use_ema else 0.0

    def _evaluate(self, model: SANode):
        cfg = self.cfg
        return evaluate(
            model,
            self.val[0],
            self.val[1],
            t_end=cfg.t_eval,
            dt=cfg.dt,
            method=cfg.method,
            batch_size=cfg.eval_batch_size,
            threshold=cfg.threshold,
            tol=cfg.eval_tol,
            products=self.model.eval_products,
        )

    # -- collapse ------------------------------------------------------------------------------
    def collapse(self, epoch: int, record: dict[str, float]) -> None:
        """Keep the best validated epoch; on a collapse (validation H under
        ``collapse_fraction`` x the best for ``collapse_patience`` epochs in a row) restore it
        and lower the lr, or stop (:class:`CollapseError`, the best epoch in the checkpoint)."""
        cfg = self.cfg
        if cfg.collapse_fraction is None or "val_accuracy" not in record:
            return
        accuracy = record["val_accuracy"]
        if self.best is None or accuracy > self.best["val_accuracy"]:
            self.best = {
                **_copy(self._state()),
                "epoch": epoch + 1,
                "val_accuracy": accuracy,
                "history": [*self.history, record],
            }
            return
        best = self.best["val_accuracy"]
        if best < cfg.collapse_min_best or accuracy >= cfg.collapse_fraction * best:
            self.low_epochs = 0
            return
        self.low_epochs += 1
        if self.low_epochs < cfg.collapse_patience:
            return
        self.low_epochs = 0
        what = (
            f"validation H collapsed in epoch {epoch + 1}: {accuracy:.4f}, under "
            f"{cfg.collapse_fraction:g} x the best {self.best['val_accuracy']:.4f} (epoch "
            f"{self.best['epoch']}) for {cfg.collapse_patience} epoch(s)"
        )
        if cfg.collapse_action == "rollback" and self.rollbacks < cfg.collapse_max_rollbacks:
            # the best epoch's weights, optimiser moments and average; the schedule goes on
            # where it is (rewinding it would overrun its steps), its lr scaled down from now
            hyper = [
                {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
            ]
            self._load_state({k: v for k, v in self.best.items() if k != "scheduler"})
            for group, before in zip(self.optimizer.param_groups, hyper, strict=True):
                group.update(before)
                group["lr"] *= cfg.collapse_lr_factor
            self.rollbacks += 1
            self.lr_scale *= cfg.collapse_lr_factor
            record["rollback"] = float(self.best["epoch"])
            record["lr_scale"] = self.lr_scale
            tqdm.write(
                f"sanode: {what}; back to epoch {self.best['epoch']}'s weights, lr x "
                f"{self.lr_scale:g} (rollback {self.rollbacks} of {cfg.collapse_max_rollbacks})"
            )
            return
        # stop: the checkpoint holds the best epoch, so nothing bad is handed out
        self._load_state(self.best)
        self.history = list(self.best["history"])
        self.save(int(self.best["epoch"]))
        raise CollapseError(
            f"{what}; stopped after {self.rollbacks} rollback(s). The checkpoint holds epoch "
            f"{self.best['epoch']}'s weights; try a smaller lr (now {cfg.lr}) or a longer warm-up"
        )

    def stall(self, epoch: int, record: dict[str, float]) -> None:
        """Stop (:class:`StallError`) when validation H has stayed under ``stall_floor`` through
        the first ``stall_epochs`` epochs or more: a deterministic run that does not start
        learning would not start after a restart either."""
        cfg = self.cfg
        if cfg.stall_epochs is None or epoch + 1 < cfg.stall_epochs or "val_accuracy" not in record:
            return
        best = max(r.get("val_accuracy", 0.0) for r in [*self.history, record])
        if best >= cfg.stall_floor:
            return
        raise StallError(
            f"validation H stayed under {cfg.stall_floor:g} for {epoch + 1} epochs (best "
            f"{best:.4f}): the run has not started learning; try another seed, a smaller lr "
            f"(now {cfg.lr}) or a longer warm-up. {self.kept}"
        )


def averaged_model(model: SANode, decay: float | None):
    """An exponential moving average of ``model``'s parameters (``decay`` per optimiser
    step; :class:`torch.optim.swa_utils.AveragedModel`), or None."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


@torch.no_grad()
def batch_diagnostics(model: SANode, out: torch.Tensor, loss: float) -> dict[str, float]:
    """What a batch looked like after its backward pass (before its optimiser step): the loss,
    gamma, the share of the trainable eigenvalues on their clip, the share of final states on
    the state clip, the gradient norm of each block (eigenvectors, eigenvalues, gamma) and
    :func:`coupling_diagnostics` (Phi's condition number, the error of A's build)."""
    top = model.stability_bound() - model.margin
    stats = {
        "loss": loss,
        "gamma": float(model.gamma),
        "eig_on_clip": float((model.eig_free >= top).double().mean()),
        "states_on_clip": (
            0.0
            if model.clip is None
            else float((out.detach().abs() >= model.clip * model.a * (1 - 1e-6)).double().mean())
        ),
    }
    for name, p in (("basis", model.basis_free), ("eig", model.eig_free), ("gamma", model.gamma)):
        stats[f"grad_{name}"] = 0.0 if p.grad is None else float(p.grad.norm())
    stats.update(coupling_diagnostics(model))
    return stats


@torch.no_grad()
def coupling_diagnostics(model: SANode) -> dict[str, float]:
    """How well the training pass's A is determined: ``basis_cond``, the 1-norm condition
    number of Phi (its estimate |Phi|_1 |Phi^-1|_1, float64), and ``coupling_error``, the
    relative Frobenius error of A as the training pass builds it (``coupling_dtype``) against
    the float64 build (0 where it is float64). A solve in float32 loses about cond x 6e-8 of A.
    Costs one float64 inverse (the reference A is built from it: Phi diag(lambda) Phi^-1, as
    exact as the solve to float64 rounding) and the float32 build: batch traces only."""
    phi = model.basis().to(torch.float64)
    inverse = torch.linalg.inv(phi)
    cond = torch.linalg.matrix_norm(phi, 1) * torch.linalg.matrix_norm(inverse, 1)
    error = 0.0
    if model.coupling_dtype != torch.float64:
        exact = (phi * model.eigenvalues().to(torch.float64)) @ inverse
        built = model.coupling(model.coupling_dtype).to(torch.float64)
        error = float(torch.linalg.matrix_norm(built - exact) / torch.linalg.matrix_norm(exact))
    return {"basis_cond": float(cond), "coupling_error": error}


def _copy(state: Any) -> Any:
    """A deep copy of nested state dicts (tensors cloned), so that later steps leave it be."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_copy(v) for v in state]
    return state


def _train(
    cfg,
    x,
    y,
    patterns,
    val,
    checkpoint_path,
    resume,
    callback,
    progress,
    batch_callback=None,
    precision=None,
) -> TrainResult:
    _check_inputs(x, y, patterns, cfg.augment_shift)
    run = _Run(cfg, x, y, patterns, val, checkpoint_path, batch_callback, precision)
    if resume:
        run.resume()
    bar = tqdm(
        range(run.start_epoch, cfg.epochs),
        initial=run.start_epoch,
        total=cfg.epochs,
        desc=f"train {cfg.dataset}",
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    stopped = False
    for epoch in bar:
        record = run.epoch(epoch)
        run.validate(record)
        run.collapse(epoch, record)
        run.stall(epoch, record)
        run.history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        # the checkpoint is written before the callback: a scheduler that stops the run inside
        # the callback (Tune's ASHA at tune.report) keeps every epoch it finished
        run.save(epoch + 1)
        if callback is not None and callback(epoch + 1, record, run.final_model()):
            stopped = True
            break
    bar.close()
    return TrainResult(model=run.final_model(), history=run.history, stopped_early=stopped)


def _resumable(cfg: TrainConfig) -> set[str]:
    """Settings that may change between a run and its resumption without changing its result
    so far; ``epochs`` only under a constant schedule (else the schedule's length changes)."""
    if cfg.lr_schedule == "constant" and not cfg.lr_warmup:
        return _RESUMABLE | {"epochs"}
    return _RESUMABLE


# Settings that may change between a run and its resumption without changing its result so far.
_RESUMABLE = set(EXECUTION_KEYS)
