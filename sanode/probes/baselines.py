"""Baselines in the same harness: logistic regression and an MLP with about as many parameters.

They train on the same prepared data with the same per-epoch training noise (``eps_train``)
and are scored on exactly the noisy test sets the SA-nODE sees (same noise generator per
level, :func:`sanode.core.noise.noise_generator`), so their accuracy sits beside H.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ..core.noise import add_pixel_noise, epoch_generator, noise_generator

KINDS = ("logistic", "mlp")


def sanode_parameter_count(n: int, k: int) -> int:
    """Trainable parameters of an SA-nODE: N(N-K) eigenvector entries, N-K eigenvalues, gamma."""
    return n * (n - k) + (n - k) + 1


def mlp_hidden_for(n: int, k: int, budget: int) -> int:
    """Hidden width of a one-hidden-layer MLP (N -> h -> K) with about ``budget`` parameters."""
    return max(1, round((budget - k) / (n + 1 + k)))


def build_baseline(kind: str, n: int, k: int, *, seed: int = 0) -> nn.Module:
    """``logistic`` (N -> K linear) or ``mlp`` (N -> h -> K, ReLU, h matching the SA-nODE)."""
    torch.manual_seed(seed)  # nn.Linear initialises from the global generator
    if kind == "logistic":
        return nn.Linear(n, k)
    if kind == "mlp":
        h = mlp_hidden_for(n, k, sanode_parameter_count(n, k))
        return nn.Sequential(nn.Linear(n, h), nn.ReLU(), nn.Linear(h, k))
    raise ValueError(f"unknown baseline {kind!r}; choose one of {list(KINDS)}")


@dataclass
class Fit:
    """A trained baseline and how its epoch was chosen: ``epoch`` (1-based) the one whose
    weights it holds, ``epochs_run`` those trained, ``val_accuracy`` that epoch's validation
    accuracy (NaN without a validation split)."""

    model: nn.Module
    epoch: int
    epochs_run: int
    val_accuracy: float


def train_baseline(
    kind: str,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    *,
    eps_train: float,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    patience: int | None = None,
) -> Fit:
    """Adam on the cross-entropy, fresh seeded training noise every epoch (as the SA-nODE).

    With ``val`` (images, labels; noised once at ``eps_train`` with a seed of its own, as the
    SA-nODE validates at its training noise) every epoch is validated and the best epoch's
    weights are kept; ``patience`` stops once that many epochs in a row did not improve on the
    best (trained to convergence, at most ``epochs``). Without ``val``: all ``epochs``, the
    last weights."""
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be a positive number of epochs or None, got {patience}")
    model = build_baseline(kind, x.shape[1], k, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xv = None
    if val is not None:
        xv = add_pixel_noise(val[0], eps_train, noise_generator(seed + 7_919, 0)).float()
    best, best_epoch, best_state, stale = -1.0, 0, None, 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        gen = epoch_generator(seed, epoch - 1)
        order = torch.randperm(len(x), generator=gen)
        xe = add_pixel_noise(x[order], eps_train, gen)
        ye = y[order]
        model.train()
        for start in range(0, len(xe), batch_size):
            opt.zero_grad(set_to_none=True)
            logits = model(xe[start : start + batch_size])
            nn.functional.cross_entropy(logits, ye[start : start + batch_size]).backward()
            opt.step()
        if xv is None or val is None:
            continue
        with torch.no_grad():
            acc = float((model.eval()(xv).argmax(dim=1) == val[1]).double().mean())
        if acc > best:
            best, best_epoch, stale = acc, epoch, 0
            best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            stale += 1
            if patience is not None and stale >= patience:
                break
    if best_state is None:
        return Fit(model.eval(), epoch, epoch, float("nan"))
    model.load_state_dict(best_state)
    return Fit(model.eval(), best_epoch, epoch, best)


@torch.no_grad()
def evaluate_baseline(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_test: list[float],
    seed: int = 0,
    noise_seeds: int = 1,
) -> pd.DataFrame:
    """Accuracy per test-noise level and draw on the SA-nODE's noisy test sets (draw r of level
    i: :func:`noise_generator` ``(seed + r, i)``, as :func:`sanode.pipeline.robustness.score`
    draws them): one row per (noise_seed, eps_test)."""
    rows = []
    for r in range(noise_seeds):
        for i, eps in enumerate(eps_test):
            noisy = add_pixel_noise(x, eps, noise_generator(seed + r, i))
            pred = model(noisy.to(torch.float32)).argmax(dim=1)
            rows.append(
                {
                    "eps_test": float(eps),
                    "noise_seed": seed + r,
                    "n": len(y),
                    "accuracy": float((pred == y).to(torch.float64).mean()),
                }
            )
    return pd.DataFrame(rows)
