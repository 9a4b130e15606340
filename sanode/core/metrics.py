"""Classification metrics of the SA-nODE paper (eqs. 5-8) and a nearest-attractor readout.

Shapes: final states ``x`` (B, N); planted patterns (K, N) of ±a; labels ``y`` (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _targets(patterns: torch.Tensor, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return patterns.to(device=like.device, dtype=like.dtype)[y.to(like.device)]


def magnetization(
    x: torch.Tensor, patterns: torch.Tensor, y: torch.Tensor, a: float
) -> torch.Tensor:
    """Per-item m_f of eq. 5: ``x . phi_y / (N a^2)``; (B,). Equals 1 exactly on the attractor."""
    return (x * _targets(patterns, y, x)).sum(dim=1) / (x.shape[1] * a * a)


def sign_overlap(x: torch.Tensor, patterns: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item ``(1/N) sum_i sign(x_i) sign(phi_y,i)`` (the quantity thresholded in eq. 7-8)."""
    return (torch.sign(x) * torch.sign(_targets(patterns, y, x))).mean(dim=1)


def accuracy(overlap: torch.Tensor, threshold: float = 0.95) -> float:
    """H of eq. 7: the fraction of items whose sign overlap is at least ``threshold``."""
    return float((overlap >= threshold).to(torch.float64).mean())


@dataclass(frozen=True)
class Buckets:
    """Counts of the paper's three outcomes."""

    exact: int  # sign overlap == 1: every pixel on the right side
    partial: int  # threshold <= overlap < 1
    wrong: int  # overlap < threshold

    @property
    def total(self) -> int:
        return self.exact + self.partial + self.wrong

    @property
    def accuracy(self) -> float:
        return (self.exact + self.partial) / self.total if self.total else float("nan")


def bucket_of(overlap: torch.Tensor, threshold: float = 0.95) -> torch.Tensor:
    """(M,) bucket per item: 0 exact (overlap = 1), 1 partial (>= threshold), 2 wrong."""
    out = torch.full(overlap.shape, 2, dtype=torch.int64)
    out[overlap >= threshold] = 1
    out[overlap >= 1.0] = 0
    return out


def buckets(overlap: torch.Tensor, threshold: float = 0.95) -> Buckets:
    """Split items into exact (overlap = 1), partial (threshold <= overlap < 1) and wrong."""
    counts = torch.bincount(bucket_of(overlap, threshold), minlength=3).tolist()
    return Buckets(exact=counts[0], partial=counts[1], wrong=counts[2])


def mse_curve(states: torch.Tensor, patterns: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE(t) of eq. 6 over a recorded trajectory.

    Args:
        states: (S, B, N) states at S times.

    Returns:
        (S,) mean over items of the squared distance ``||x(t) - phi_y||^2``.
    """
    tgt = _targets(patterns, y, states)
    return ((states - tgt.unsqueeze(0)) ** 2).sum(dim=2).mean(dim=1)


def per_item_mse(x: torch.Tensor, patterns: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) squared distance of every final state to its target pattern."""
    return ((x - _targets(patterns, y, x)) ** 2).sum(dim=1)


def nearest_attractor(x: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """(B,) class of the planted pattern with the largest overlap ``x . phi_k``."""
    return (x @ patterns.to(device=x.device, dtype=x.dtype).T).argmax(dim=1)


def nearest_attractor_accuracy(x: torch.Tensor, patterns: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of items whose nearest planted pattern is their own class."""
    return float((nearest_attractor(x, patterns) == y.to(x.device)).to(torch.float64).mean())
