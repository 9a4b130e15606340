"""Resume and save of a training run: the checkpoint it continues from (refused when it was
written with other settings), what it writes after every epoch, and which weights (raw or
averaged) it hands out. Mixed into the training run, whose state it reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import EXECUTION_KEYS, TrainConfig, renamed
from ..core.model import SANode
from .checkpoint import load_checkpoint, save_checkpoint


class RunState:
    """Resume and save (the training run sets the state below)."""

    cfg: TrainConfig
    path: Any
    device: torch.device
    model: SANode
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Any
    history: list[dict[str, float]]
    epoch_times: list[dict[str, Any]]  # every epoch run: epoch, seconds, cpu, threads
    start_epoch: int
    initial_loss: float | None
    lr_scale: float
    rollbacks: int
    low_epochs: int
    best: dict[str, Any] | None

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
        if "optimizer" not in state and int(state["epoch"]) < cfg.epochs:
            raise ValueError(
                f"checkpoint {path} holds the weights of epoch {state['epoch']} without the "
                f"optimiser state to continue to epoch {cfg.epochs} from; train from scratch "
                "(sanode train --no-resume; train(..., resume=False)) or give it the epochs it "
                "was trained for"
            )
        self._load_state(state)
        self.history = list(state["history"])
        self.epoch_times = list(state.get("epoch_times", []))  # older checkpoints: none
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
        """Weights and, where the checkpoint keeps them (a finished run's may not:
        :func:`~sanode.training.checkpoint.keep_weights_only`), optimiser, schedule and
        average."""
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None and "ema_model" in state:
            self.ema.module.load_state_dict(state["ema_model"])

    def save(self, epoch: int) -> None:
        """Write the checkpoint of the run after ``epoch`` (1-based) epochs, atomically."""
        if self.path is None:
            return
        payload = {
            **self._state(),
            "config": self.cfg.to_dict(),
            "epoch": epoch,
            "history": self.history,
            "epoch_times": self.epoch_times,
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


def _resumable(cfg: TrainConfig) -> set[str]:
    """Settings that may change between a run and its resumption without changing its result
    so far; ``epochs`` only under a constant schedule (else the schedule's length changes)."""
    if cfg.lr_schedule == "constant" and not cfg.lr_warmup:
        return _RESUMABLE | {"epochs"}
    return _RESUMABLE


# Settings that may change between a run and its resumption without changing its result so far.
_RESUMABLE = set(EXECUTION_KEYS)
