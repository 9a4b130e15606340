"""Checkpoints that carry their own config: atomic writes, ``weights_only`` loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, torch_dtype
from .files import write_torch
from .model import SANode

FORMAT_VERSION = 1


def model_from_config(cfg: TrainConfig, patterns: torch.Tensor) -> SANode:
    """A freshly initialised model for ``cfg`` with the given (K, N) planted patterns, its
    training products ``cfg.matmul_dtype`` and evaluation products ``cfg.eval_matmul_dtype``."""
    return SANode(
        patterns,
        a=cfg.a,
        gamma=cfg.gamma,
        eig_mean=cfg.eig_mean,
        eig_std=cfg.eig_std,
        basis_gain=cfg.basis_gain,
        clip=cfg.clip,
        margin=cfg.margin,
        dtype=cfg.torch_dtype,
        products=cfg.train_products,
        eval_products=cfg.eval_products,
        coupling_dtype=torch_dtype(cfg.coupling_dtype),
        seed=cfg.seed,
    )


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temp file + rename): a crash never leaves a torn file,
    and a full disk raises :class:`sanode.files.DiskFullError` with the previous checkpoint
    intact."""
    write_torch(path, {"format": FORMAT_VERSION, **payload}, what="checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train a model first")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable sanode checkpoint ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a sanode checkpoint of format {FORMAT_VERSION}; "
            "was it written by another program or version?"
        )
    return payload


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``(model, config, payload)`` rebuilt from a checkpoint of :func:`sanode.train.train`."""
    payload = load_checkpoint(path, map_location)
    bad = [
        k for k, v in payload["model"].items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise ValueError(
            f"{path} holds non-finite parameters {bad} (a diverged run); it cannot be evaluated. "
            "Retrain with a smaller lr."
        )
    cfg = TrainConfig.from_dict(payload["config"])  # keys it predates take their defaults
    model = model_from_config(cfg, payload["model"]["patterns"])
    # the weights the run selected: the raw ones, or their average (ema_decay) where it
    # validated at least as well in the last epoch
    weights = payload["ema_model"] if payload.get("weights") == "ema" else payload["model"]
    model.load_state_dict(weights)
    return model.to(map_location), cfg, payload
