"""Paper Fig. 8: the integration converges as the time step shrinks, at the method's order.

For each method and time step the states at ``t`` are compared with a reference solution (RK4
at a much smaller step, float64): the error ``max |x_dt(t) - x_ref(t)|`` falls as dt^order, and
the MSE to the targets at ``t`` (the quantity of the paper's Fig. 8) settles on its limit.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from ..core.integrate import integrate
from ..core.model import SANode


@torch.no_grad()
def timestep_convergence(
    model: SANode,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    t: float,
    dts: list[float],
    methods: list[str],
    reference_dt: float,
) -> pd.DataFrame:
    """One row per (method, dt): mse at t (mean per-item squared distance to the target),
    error (max abs difference to the reference), and the reference's mse. All float64."""
    for dt in [*dts, reference_dt]:
        if abs(t / dt - round(t / dt)) > 1e-9:
            raise ValueError(f"every time step must divide t = {t} exactly, got dt = {dt}")
    dyn = model.dynamics(torch.float64)
    x = x.to(torch.float64)
    target = model.patterns.to(torch.float64)[y]
    ref = integrate(dyn, x, t, reference_dt, method="rk4")
    ref_mse = float(((ref - target) ** 2).sum(dim=1).mean())
    rows = []
    for method in methods:
        for dt in dts:
            end = integrate(dyn, x, t, dt, method=method)
            rows.append(
                {
                    "method": method,
                    "dt": float(dt),
                    "t": float(t),
                    "mse": float(((end - target) ** 2).sum(dim=1).mean()),
                    "error": float((end - ref).abs().max()),
                    "reference_mse": ref_mse,
                }
            )
    return pd.DataFrame(rows)


def fitted_order(
    table: pd.DataFrame, *, floor: float = 1e-12, smallest: int | None = 4
) -> dict[str, float]:
    """Least-squares slope of log(error) against log(dt) per method.

    Uses the ``smallest`` time steps whose error is above ``floor`` (the asymptotic regime:
    at large steps the error is not yet ~ dt^order; below ``floor`` rounding dominates);
    ``smallest=None`` fits all of them.
    """
    orders = {}
    for method, group in table.groupby("method"):
        g = group[group["error"] > floor].sort_values("dt")
        if smallest is not None:
            g = g.head(smallest)
        if len(g) < 2:
            orders[method] = math.nan
            continue
        lx = [math.log(v) for v in g["dt"]]
        ly = [math.log(v) for v in g["error"]]
        mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
        sxx = sum((a - mx) ** 2 for a in lx)
        orders[method] = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sxx
    return orders
