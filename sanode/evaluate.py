"""Evaluation of a trained model: integrate to the evaluation horizon and score the final states."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import metrics
from .converge import integrate_until_converged
from .integrate import integrate
from .model import SANode


@torch.no_grad()
def final_states(
    model: SANode,
    x: torch.Tensor,
    *,
    t_end: float,
    dt: float,
    method: str = "euler",
    batch_size: int = 2000,
    tol: float | None = None,
) -> torch.Tensor:
    """x(t_end) for every row of x (M, N), integrated in batches; returned on the CPU.

    With ``tol``, items stop as soon as they sit on a fixed point (``max |F| < tol``, see
    :mod:`sanode.converge`) instead of running all floor(t_end/dt) steps.
    """
    dyn = model.dynamics()  # A built once for all batches
    device = model.gamma.device
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device=device, dtype=model.dtype)
        if tol is None:
            out.append(integrate(dyn, xb, t_end, dt, method=method).cpu())
        else:
            final, _ = integrate_until_converged(dyn, xb, t_end, dt, method=method, tol=tol)
            out.append(final.cpu())
    return torch.cat(out) if out else x.new_empty((0, x.shape[1]))


@dataclass(frozen=True)
class Evaluation:
    """Scores of one evaluation; ``overlap`` and ``states`` keep the per-item details."""

    buckets: metrics.Buckets
    accuracy: float
    nearest_accuracy: float
    mean_magnetization: float
    mean_mse: float
    overlap: torch.Tensor
    states: torch.Tensor

    def summary(self, prefix: str = "") -> dict[str, float]:
        """Flat dict of scalar metrics (for logging)."""
        return {
            f"{prefix}exact": self.buckets.exact,
            f"{prefix}partial": self.buckets.partial,
            f"{prefix}wrong": self.buckets.wrong,
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}nearest_accuracy": self.nearest_accuracy,
            f"{prefix}m_f": self.mean_magnetization,
            f"{prefix}mse": self.mean_mse,
        }


def evaluate(
    model: SANode,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    t_end: float,
    dt: float,
    method: str = "euler",
    batch_size: int = 2000,
    threshold: float = 0.95,
    tol: float | None = None,
) -> Evaluation:
    """Integrate every item of x (M, N) to ``t_end`` (or to convergence, with ``tol``) and
    score it against its label y (M,)."""
    states = final_states(
        model, x, t_end=t_end, dt=dt, method=method, batch_size=batch_size, tol=tol
    )
    patterns = model.patterns.cpu()
    y = y.cpu()
    overlap = metrics.sign_overlap(states, patterns, y)
    return Evaluation(
        buckets=metrics.buckets(overlap, threshold),
        accuracy=metrics.accuracy(overlap, threshold),
        nearest_accuracy=metrics.nearest_attractor_accuracy(states, patterns, y),
        mean_magnetization=float(metrics.magnetization(states, patterns, y, model.a).mean()),
        mean_mse=float(metrics.per_item_mse(states, patterns, y).mean()),
        overlap=overlap,
        states=states,
    )
