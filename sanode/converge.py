"""Evaluation that stops at convergence: items leave the batch once they sit on a fixed point.

An item is converged when the largest component of its velocity ``|F(x)|`` (measured as
``|x_{k+1} - x_k| / dt`` every ``check_every`` steps) is below ``tol``: it has reached a fixed
point, and integrating it further to ``t_end`` would not move it. Converged items are taken out
of the batch, so the matrix products shrink as the dynamics settles; ``t_end`` stays the upper
bound for the rest.
"""

from __future__ import annotations

import torch

from .integrate import Dynamics, get_solver, num_steps


@torch.no_grad()
def integrate_until_converged(
    dyn: Dynamics,
    x0: torch.Tensor,
    t_end: float,
    dt: float,
    *,
    method: str = "euler",
    tol: float = 1e-4,
    check_every: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate x0 (B, N) up to ``t_end``, retiring each item once ``max_i |F_i(x)| < tol``.

    Returns:
        The final states (B, N) and the number of steps each item was integrated (B,),
        at most ``floor(t_end / dt)``; their sum over the items is the work done.
    """
    if not tol > 0:
        raise ValueError(f"the convergence tolerance must be > 0, got {tol}")
    if check_every < 1:
        raise ValueError(f"check_every must be a positive step count, got {check_every}")
    solver = get_solver(method)
    n = num_steps(t_end, dt)
    out = x0.clone()
    steps = torch.full((len(x0),), n, dtype=torch.int64)
    active = torch.arange(len(x0), device=x0.device)
    x = x0
    for i in range(1, n + 1):
        x_new = solver.step(dyn, x, dt)
        if dyn.clip is not None:
            x_new = x_new.clamp(-dyn.clip, dyn.clip)
        if i % check_every == 0 and i < n:
            done = (x_new - x).abs().amax(dim=1) < tol * dt
            if bool(done.any()):
                out[active[done]] = x_new[done]
                steps[active[done].cpu()] = i
                keep = ~done
                active, x_new = active[keep], x_new[keep]
                if len(active) == 0:
                    return out, steps
        x = x_new
    out[active] = x
    return out, steps
