"""Evaluation of a trained model: integrate to the evaluation horizon and score the final states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch

from ..core import metrics
from ..core.converge import integrate_until_converged
from ..core.integrate import integrate, num_steps
from ..core.model import SANode
from ..core.products import Products


@overload
def final_states(
    model: SANode,
    x: torch.Tensor,
    *,
    t_end: float,
    dt: float,
    method: str = ...,
    batch_size: int = ...,
    tol: float | None = ...,
    return_steps: Literal[False] = ...,
    products: Products | None = ...,
) -> torch.Tensor: ...
@overload
def final_states(
    model: SANode,
    x: torch.Tensor,
    *,
    t_end: float,
    dt: float,
    method: str = ...,
    batch_size: int = ...,
    tol: float | None = ...,
    return_steps: Literal[True],
    products: Products | None = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...
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
    return_steps: bool = False,
    products: Products | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x(t_end) for every row of x (M, N), integrated in batches; returned on the CPU.

    With ``tol``, items stop as soon as they sit on a fixed point (``max |F| < tol``, see
    :mod:`sanode.core.converge`) instead of running all floor(t_end/dt) steps. With
    ``return_steps`` also returns the steps each item was integrated (M,) (the work done).
    ``products``: the matrix products (default: the model's ``eval_products``); with bfloat16
    products and ``tol``, each item finishes on float32 products (its bfloat16 velocity
    cannot fall below ``tol``, see :mod:`sanode.core.converge`).
    """
    # A built once for all batches
    dyn, finish = model.early_exit_dynamics(products)
    device = model.gamma.device
    n = num_steps(t_end, dt)
    out, steps = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device=device, dtype=model.dtype)
        if tol is None:
            out.append(integrate(dyn, xb, t_end, dt, method=method).cpu())
            steps.append(torch.full((len(xb),), n, dtype=torch.int64))
        else:
            final, done = integrate_until_converged(
                dyn, xb, t_end, dt, method=method, tol=tol, finish=finish
            )
            out.append(final.cpu())
            steps.append(done.cpu())
    states = torch.cat(out) if out else x.new_empty((0, x.shape[1]))
    if return_steps:
        return states, torch.cat(steps) if steps else torch.zeros(0, dtype=torch.int64)
    return states


# the scalar scores of an evaluation, and the subset logged as validation metrics
RECORD_KEYS = (
    "n",
    "exact",
    "partial",
    "wrong",
    "accuracy",
    "nearest_accuracy",
    "m_f",
    "mse",
    "work_fraction",
)
SUMMARY_KEYS = ("exact", "partial", "wrong", "accuracy", "nearest_accuracy", "m_f", "mse")


@dataclass(frozen=True)
class Evaluation:
    """Scores of one evaluation; ``overlap``, ``states`` and ``steps`` keep per-item details.

    ``steps`` (M,) is how many steps each item was integrated: all floor(t_end/dt) of them
    without early exit; ``work_fraction`` is their total over that fixed-step total.
    """

    buckets: metrics.Buckets
    accuracy: float
    nearest_accuracy: float
    mean_magnetization: float
    mean_mse: float
    overlap: torch.Tensor
    states: torch.Tensor
    steps: torch.Tensor
    work_fraction: float

    def record(self, keys: tuple[str, ...] = RECORD_KEYS) -> dict[str, float | int]:
        """The scalar scores named by ``keys`` (default all of :data:`RECORD_KEYS`): the one
        bucket summary every table, log and result file takes its columns from."""
        values = {
            "n": self.buckets.total,
            "exact": self.buckets.exact,
            "partial": self.buckets.partial,
            "wrong": self.buckets.wrong,
            "accuracy": self.accuracy,
            "nearest_accuracy": self.nearest_accuracy,
            "m_f": self.mean_magnetization,
            "mse": self.mean_mse,
            "work_fraction": self.work_fraction,
        }
        return {key: values[key] for key in keys}

    def summary(self, prefix: str = "") -> dict[str, float]:
        """The validation metrics logged each epoch, each key with ``prefix``."""
        return {f"{prefix}{k}": v for k, v in self.record(SUMMARY_KEYS).items()}


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
    products: Products | None = None,
) -> Evaluation:
    """Integrate every item of x (M, N) to ``t_end`` (or to convergence, with ``tol``) and
    score it against its label y (M,)."""
    states, steps = final_states(
        model,
        x,
        t_end=t_end,
        dt=dt,
        method=method,
        batch_size=batch_size,
        tol=tol,
        return_steps=True,
        products=products,
    )
    fixed = num_steps(t_end, dt) * len(steps)
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
        steps=steps,
        work_fraction=float(steps.sum()) / fixed if fixed else 1.0,
    )
