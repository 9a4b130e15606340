"""Losses on the final state x(T): how far a batch is from its planted attractors.

The buckets count signs (an item is right when ``sign(x(T))`` agrees with its pattern on at
least 95 % of the nodes), while the paper's MSE also pays for magnitude: a state that has the
right signs but sits at 0.3 instead of 0.5 costs as much as a wrong pixel at -0.1. The other
losses here look at what decides the class:

- ``overlap_ce``: cross-entropy over the K overlaps ``m_k = <x, phi_k> / (N a^2)`` divided by
  a temperature (the class is the pattern the state is closest to);
- ``sign_margin``: a squared hinge per pixel, ``relu(margin - x_i phi_i / a^2)^2`` averaged,
  zero once every pixel has the target's sign with at least ``margin * a`` of magnitude.

Every loss can carry the paper's MSE beside it (``mse_weight``), so that the state is still
pulled into the well of its attractor and not only onto its side of the boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LOSSES

__all__ = ["LOSSES", "final_state_loss", "overlaps"]


def overlaps(states: torch.Tensor, patterns: torch.Tensor, a: float) -> torch.Tensor:
    """(B, K) overlaps ``<x, phi_k> / (N a^2)`` of states (B, N) with patterns (K, N): 1 at the
    attractor ``phi_k``, ``1 - 4L/N`` at another block pattern."""
    n = patterns.shape[1]
    return states @ patterns.to(states.dtype).T / (n * a * a)


def final_state_loss(
    states: torch.Tensor,
    patterns: torch.Tensor,
    labels: torch.Tensor,
    *,
    a: float,
    kind: str = "mse",
    temperature: float = 0.05,
    margin: float = 0.5,
    mse_weight: float = 0.0,
) -> torch.Tensor:
    """The mean loss of final states (B, N) against the patterns (K, N) of their labels (B,).

    Args:
        kind: ``"mse"`` (the paper's), ``"overlap_ce"`` or ``"sign_margin"`` (module docstring).
        temperature: ``overlap_ce`` logits are ``m_k / temperature``.
        margin: ``sign_margin`` asks for ``x_i phi_i / a^2 >= margin`` (1 at the attractor).
        mse_weight: weight of the MSE added to ``overlap_ce`` or ``sign_margin`` (ignored by
            ``mse``).

    Returns:
        A 0-dim tensor in the dtype of ``states``.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {kind!r}")
    target = patterns.to(states.dtype)[labels]
    mse = F.mse_loss(states, target)
    if kind == "mse":
        return mse
    if kind == "overlap_ce":
        logits = overlaps(states, patterns, a) / temperature
        loss = F.cross_entropy(logits, labels.to(logits.device))
    else:
        signed = states * target / (a * a)
        loss = F.relu(margin - signed).square().mean()
    return loss + mse_weight * mse if mse_weight else loss
