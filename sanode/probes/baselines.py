"""Baselines in the same harness: logistic regression and an MLP with about as many parameters.

They train on the same prepared data with the same per-epoch training noise (``eps_train``)
and are scored on exactly the noisy test sets the SA-nODE sees (same noise generator per
level, :func:`sanode.core.noise.noise_generator`), so their accuracy sits beside H.
"""

from __future__ import annotations

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
) -> nn.Module:
    """Adam on the cross-entropy, fresh seeded training noise every epoch (as the SA-nODE)."""
    model = build_baseline(kind, x.shape[1], k, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(len(x), generator=gen)
        xe = add_pixel_noise(x[order], eps_train, gen)
        ye = y[order]
        for start in range(0, len(xe), batch_size):
            opt.zero_grad(set_to_none=True)
            logits = model(xe[start : start + batch_size])
            nn.functional.cross_entropy(logits, ye[start : start + batch_size]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def evaluate_baseline(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps_test: list[float], seed: int = 0
) -> pd.DataFrame:
    """Accuracy per test-noise level on the SA-nODE's noisy test sets: one row per eps_test."""
    rows = []
    for i, eps in enumerate(eps_test):
        noisy = add_pixel_noise(x, eps, noise_generator(seed, i))
        pred = model(noisy.to(torch.float32)).argmax(dim=1)
        rows.append(
            {
                "eps_test": float(eps),
                "n": len(y),
                "accuracy": float((pred == y).to(torch.float64).mean()),
            }
        )
    return pd.DataFrame(rows)
