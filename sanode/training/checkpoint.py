"""Checkpoints that carry their own config: the model they hold rebuilt and loaded.

The file format (atomic writes, ``weights_only`` loads, a format version) is
:func:`sanode.files.save_checkpoint` / :func:`sanode.files.load_checkpoint`, shared with the
prepared data sets."""

from __future__ import annotations

import os

import torch

from ..choices import renamed
from ..config import TrainConfig
from ..core.model import SANode
from ..core.precision import Precision
from ..files import load_checkpoint, save_checkpoint
from ..runtime import torch_dtype

__all__ = [
    "CONTINUE_KEYS",
    "keep_weights_only",
    "load_checkpoint",
    "load_model",
    "model_from_config",
    "save_checkpoint",
]

# what only a run that goes on training reads: the optimiser's moments, the schedule, the
# average's own state and the best epoch's copy for a rollback (together about 5x the weights)
CONTINUE_KEYS = ("optimizer", "scheduler", "ema", "best")


def model_from_config(
    cfg: TrainConfig, patterns: torch.Tensor, precision: Precision | None = None
) -> SANode:
    """A freshly initialised model for ``cfg`` with the given (K, N) planted patterns and the
    run's precision (default ``cfg.precision(N)``: the products, routes and solves its
    settings mean here, measured where they say auto), kept as ``model.precision``."""
    precision = precision or cfg.precision(patterns.shape[1])
    model = SANode(
        patterns,
        a=cfg.a,
        gamma=cfg.gamma,
        eig_mean=cfg.eig_mean,
        eig_std=cfg.eig_std,
        basis_gain=cfg.basis_gain,
        clip=cfg.clip,
        margin=cfg.margin,
        dtype=cfg.torch_dtype,
        products=precision.train,
        eval_products=precision.eval,
        coupling_dtype=torch_dtype(cfg.coupling_dtype),
        lapack=precision.lapack,
        seed=cfg.seed,
    )
    model.precision = precision
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``(model, config, payload)`` rebuilt from a checkpoint of
    :func:`sanode.training.train.train`."""
    payload = load_checkpoint(path, map_location)
    bad = [
        k for k, v in payload["model"].items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise ValueError(
            f"{path} holds non-finite parameters {bad} (a diverged run); it cannot be evaluated. "
            "Retrain with a smaller lr."
        )
    # keys it predates take their defaults; names renamed since are read without a word (a
    # checkpoint is a result: there is nothing for its user to rename)
    cfg = TrainConfig.from_dict(renamed(payload["config"], warn=False))
    model = model_from_config(cfg, payload["model"]["patterns"])
    # the weights the run selected: the raw ones, or their average (ema_decay) where it
    # validated at least as well in the last epoch
    weights = payload["ema_model"] if payload.get("weights") == "ema" else payload["model"]
    model.load_state_dict(weights)
    return model.to(map_location), cfg, payload


def keep_weights_only(path: str | os.PathLike) -> bool:
    """Rewrite the checkpoint of a run that trained all its epochs without what only going on
    needs (:data:`CONTINUE_KEYS`), atomically: the weights (raw and averaged), config, history
    and precision stay, so evaluation and :func:`load_model` read it as before and resuming it
    finds nothing to train. An MNIST trial's checkpoint shrinks from 29 MB to 5 MB. Returns
    whether the file changed (``False``: already without them)."""
    payload = load_checkpoint(path)
    if not any(key in payload for key in CONTINUE_KEYS):
        return False
    epochs = TrainConfig.from_dict(renamed(payload["config"], warn=False)).epochs
    if int(payload["epoch"]) < epochs:
        raise ValueError(
            f"{path} holds epoch {payload['epoch']} of {epochs}: only a finished run's "
            "checkpoint can drop the optimiser state it would continue from"
        )
    payload.pop("format", None)
    save_checkpoint(path, {k: v for k, v in payload.items() if k not in CONTINUE_KEYS})
    return True
