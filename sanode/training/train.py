"""Training loop: Adam on the MSE to the target attractor, fresh seeded noise every epoch.

Resuming from a checkpoint reproduces the uninterrupted run exactly: everything random in
an epoch (shuffle and training noise) comes from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..core.calibration import cpu_model
from ..core.model import SANode
from ..core.noise import add_pixel_noise, augment_generator, epoch_generator
from ..core.precision import Precision
from ..data.augment import image_side, shift_images
from ..data.raw import balanced_subset
from ..runtime import matmul_precision, resolve_device
from .checkpoint import model_from_config
from .evaluate import evaluate
from .guards import CollapseError as CollapseError
from .guards import DivergenceError as DivergenceError
from .guards import Guards, Reseeds
from .guards import StallError as StallError
from .guards import batch_diagnostics as batch_diagnostics
from .guards import coupling_diagnostics as coupling_diagnostics
from .losses import final_state_loss
from .memory import keep_freed_memory
from .optim import adam as adam
from .optim import epoch_batches as epoch_batches
from .optim import make_optimizer as make_optimizer
from .optim import make_scheduler as make_scheduler
from .optim import ortho_loss as ortho_loss
from .run_state import RunState

EpochCallback = Callable[[int, dict[str, float], SANode], Any]
BatchCallback = Callable[[int, int, dict[str, float]], Any]


@dataclass
class TrainResult:
    model: SANode
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    stalled_seeds: list[int] = field(default_factory=list)  # seeds that stalled first


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
    reseeds = Reseeds(cfg, checkpoint_path, resume)
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


class _Run(RunState, Guards):
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
        self.epoch_times: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.initial_loss: float | None = None
        self.lr_scale = 1.0  # lowered by each collapse rollback
        self.rollbacks = 0
        self.low_epochs = 0  # epochs in a row under the collapse floor
        self.best: dict[str, Any] | None = None  # the best validated epoch's state
        self.kept = "The last good checkpoint is kept." if checkpoint_path else ""

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


def averaged_model(model: SANode, decay: float | None):
    """An exponential moving average of ``model``'s parameters (``decay`` per optimiser
    step; :class:`torch.optim.swa_utils.AveragedModel`), or None."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


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
        start = time.perf_counter()
        record = run.epoch(epoch)
        run.validate(record)
        run.collapse(epoch, record)
        run.stall(epoch, record)
        run.history.append(record)
        # the wall of the epoch (training and validation) and the machine it ran on: kept
        # beside the history (which a resumed run reproduces exactly), every epoch run counted
        run.epoch_times.append(
            {
                "epoch": epoch + 1,
                "seconds": time.perf_counter() - start,
                "cpu": cpu_model(),
                "threads": torch.get_num_threads(),
            }
        )
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        # the checkpoint is written before the callback: a scheduler that stops the run inside
        # the callback (Tune's ASHA at tune.report) keeps every epoch it finished
        run.save(epoch + 1)
        if callback is not None and callback(epoch + 1, record, run.final_model()):
            stopped = True
            break
    bar.close()
    return TrainResult(model=run.final_model(), history=run.history, stopped_early=stopped)
