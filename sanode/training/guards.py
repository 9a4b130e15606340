"""The guards of a training run: divergence (non-finite or exploding parameters, all-zero
gradients, a runaway loss), the collapse check with its rollback to the best epoch, the stall
check and the reseeds of a stalled run, and the per-batch diagnostics that explain them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import files
from ..config import TrainConfig
from ..core.model import SANode


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN/inf; the last good checkpoint is untouched."""


class CollapseError(DivergenceError):
    """Validation H collapsed and stayed down (after the allowed rollbacks); the checkpoint
    holds the best validated epoch."""


class StallError(DivergenceError):
    """Validation H stayed under ``stall_floor`` for ``stall_epochs`` epochs: the run never
    started learning; the checkpoint holds the epoch before."""


class Reseeds:
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


class Guards:
    """The guards of a run (mixed into the training run, whose state they read): divergence
    after an epoch, the collapse check with its rollback, the stall check."""

    # the run's state the guards read and write (the training run sets it)
    cfg: TrainConfig
    model: SANode
    optimizer: torch.optim.Optimizer
    kept: str
    initial_loss: float | None
    lr_scale: float
    rollbacks: int
    low_epochs: int
    best: dict[str, Any] | None
    history: list[dict[str, float]]

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, epoch: int) -> None:
        raise NotImplementedError

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
