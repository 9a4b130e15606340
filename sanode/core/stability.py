"""Linear stability of a model's planted attractors, in closed form and, on request,
numerically (the census and the stability table read it)."""

from __future__ import annotations

from typing import Any

import torch


def report(model: Any, *, numeric: bool = False) -> dict[str, float]:
    """Linear stability of the planted attractors.

    At every ±a attractor the Jacobian is ``beta A - 8|gamma| a^2 I``; its eigenvalues are
    ``beta lambda_alpha - 8|gamma| a^2`` in closed form. Returns the largest real part
    (negative means stable), the relaxation time ``t_s = 1 / min |f'(±a) + beta lambda|``,
    the bound and the largest eigenvalue. ``numeric=True`` adds the largest real part of
    the eigenvalues of the Jacobian matrix computed by ``torch.linalg.eigvals``.
    """
    lam = model.eigenvalues()
    fprime = -8.0 * model.gamma.abs() * model.a**2
    rates = fprime + model.beta * lam
    out = {
        "max_real_jacobian_eig": float(rates.max()),
        "relaxation_time": float(1.0 / rates.abs().min()),
        "stability_bound": float(model.stability_bound()),
        "max_eigenvalue": float(lam.max()),
        "gamma": float(model.gamma),
    }
    if numeric:
        jac = model.beta * model.coupling() + fprime * torch.eye(
            model.num_nodes, dtype=torch.float64, device=lam.device
        )
        out["max_real_jacobian_eig_numeric"] = float(torch.linalg.eigvals(jac).real.max())
    return out
