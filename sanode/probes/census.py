"""Stability certificate and attractor census of a trained model.

Certificate: at every planted ±a attractor the Jacobian is ``beta A - 8|gamma| a^2 I``, whose
eigenvalues are known in closed form (:meth:`SANode.stability_report`); all negative means
every planted pattern is a stable attractor.

Census: where does the dynamics end from inputs it was not trained on? Each input is integrated
until it sits on a fixed point (``max |F(x)| < tol``) or the horizon ``t_end``; an end point is
``planted`` (within ``atol`` of a planted pattern in every pixel), ``spurious`` (some other
fixed point) or ``not_converged``. Distinct spurious attractors are counted by sign pattern.
"""

from __future__ import annotations

import torch

from ..core.converge import integrate_until_converged
from ..core.model import SANode


@torch.no_grad()
def attractor_census(
    model: SANode,
    x: torch.Tensor,
    *,
    t_end: float,
    dt: float,
    tol: float = 1e-4,
    atol: float | None = None,
) -> dict[str, float]:
    """Census of the end points of inputs x (B, N); ``atol`` defaults to a / 10."""
    atol = model.a / 10 if atol is None else atol
    dyn, finish = model.early_exit_dynamics()
    x0 = x.to(device=model.gamma.device, dtype=model.dtype)
    final, _ = integrate_until_converged(dyn, x0, t_end, dt, tol=tol, finish=finish)
    speed = (finish or dyn).field(final).abs().amax(dim=1)
    converged = speed < tol
    patterns = model.patterns.to(final)
    distance = (final[:, None, :] - patterns[None]).abs().amax(dim=2)  # (B, K)
    planted = converged & (distance.min(dim=1).values < atol)
    spurious = converged & ~planted
    signs = torch.sign(final[spurious])
    distinct = len(torch.unique(signs, dim=0)) if len(signs) else 0
    n = len(x)
    return {
        "n": n,
        "planted": int(planted.sum()),
        "spurious": int(spurious.sum()),
        "not_converged": int((~converged).sum()),
        "distinct_spurious": int(distinct),
        "planted_fraction": float(planted.sum()) / n if n else float("nan"),
    }


def census_inputs(x_test: torch.Tensor, count: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """The census's input sets, ``count`` each: ``random`` (uniform pixels in [0, 1]) and
    ``out_of_class`` (test images with their pixels permuted: the intensities of real inputs
    without their structure)."""
    gen = torch.Generator().manual_seed(int(seed))
    n = x_test.shape[1]
    idx = torch.randint(0, len(x_test), (count,), generator=gen)
    perm = torch.argsort(torch.rand(count, n, generator=gen), dim=1)
    return {
        "random": torch.rand(count, n, generator=gen),
        "out_of_class": torch.gather(x_test[idx], 1, perm),
    }
