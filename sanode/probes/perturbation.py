"""Paper Figs. 5 and 6: how robust the classification is along the eigen-directions of A.

An image is written in the eigenbasis, ``x = Phi c`` (``c = Phi^-1 x``). Perturbing the j-th
coefficient by ``sigma * xi`` (xi ~ N(0, 1)) moves the image along the j-th eigenvector:
``x' = x + sigma xi Phi[:, j]``. The perturbed image is integrated to ``t_end`` (steady state)
and scored by its squared distance to the target attractor (the per-item MSE of eq. 6).

Fig. 6 asks how many coefficients can be perturbed together (sigma = 1) while the MSE
degrades by at most 5 %. The unperturbed MSE of a clean letter is ~0 at steady state, so the
degradation is measured against the MSE range: ``(MSE_f - MSE_0) / (N (2a)^2)``, where
``N (2a)^2`` is the MSE of the state opposite to the target. Coefficients are added from the
least to the most sensitive (the single-coefficient ranking); ``f`` is the largest fraction
whose perturbation, and every smaller one, stays within the tolerance.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..core.integrate import integrate
from ..core.model import SANode


def _steady_mse(model: SANode, x: torch.Tensor, label: int, t_end: float, dt: float, method: str):
    """(B,) squared distance of x(t_end) to pattern ``label`` for images x (B, N) (float64)."""
    with torch.no_grad():
        final = integrate(model.dynamics(), x.to(model.dtype), t_end, dt, method=method)
    target = model.patterns[label].to(torch.float64)
    return ((final.to(torch.float64) - target) ** 2).sum(dim=1)


def coefficients(model: SANode, image: torch.Tensor) -> torch.Tensor:
    """c = Phi^-1 x (N,), float64 (a solve, no inverse)."""
    with torch.no_grad():
        return torch.linalg.solve(model.basis(), image.to(torch.float64))


def single_coefficient(
    model: SANode,
    image: torch.Tensor,
    label: int,
    *,
    sigmas: list[float],
    samples: int,
    t_end: float,
    dt: float,
    method: str = "euler",
    seed: int = 0,
) -> pd.DataFrame:
    """Perturb one coefficient at a time: one row per (coefficient, sigma).

    Columns: coefficient (index j into Phi's columns; the last K are the planted directions),
    sigma, mse (mean over ``samples`` draws), mse_std, mse_unperturbed, rank (0 = least
    sensitive: ordered by the MSE at the largest sigma, then by the mean over sigmas).
    """
    n = image.numel()
    x = image.reshape(-1).to(torch.float64)
    with torch.no_grad():
        phi = model.basis().detach()
    gen = torch.Generator().manual_seed(int(seed))
    xi = torch.randn(n, len(sigmas), samples, generator=gen, dtype=torch.float64)
    sig = torch.tensor(sigmas, dtype=torch.float64)
    # x' = x + sigma xi phi_j  for every (j, sigma, sample): (n, S, R, N)
    shift = (sig[None, :, None] * xi)[..., None] * phi.T[:, None, None, :]
    batch = (x + shift).reshape(-1, n)
    mse = _steady_mse(model, batch, label, t_end, dt, method).reshape(n, len(sigmas), samples)
    base = float(_steady_mse(model, x[None], label, t_end, dt, method)[0])
    key = mse.mean(dim=2)
    order = sorted(range(n), key=lambda j: (float(key[j, -1]), float(key[j].mean())))
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.tensor(order)] = torch.arange(n)
    rows = [
        {
            "coefficient": j,
            "sigma": float(s),
            "mse": float(key[j, i]),
            "mse_std": float(mse[j, i].std()) if samples > 1 else 0.0,
            "mse_unperturbed": base,
            "rank": int(rank[j]),
        }
        for j in range(n)
        for i, s in enumerate(sigmas)
    ]
    return pd.DataFrame(rows)


def collective(
    model: SANode,
    image: torch.Tensor,
    label: int,
    order: list[int],
    *,
    sigma: float,
    samples: int,
    t_end: float,
    dt: float,
    tolerance: float = 0.05,
    method: str = "euler",
    seed: int = 0,
    points: int | None = None,
) -> pd.DataFrame:
    """Perturb the first m coefficients of ``order`` together, for m = 0..N (``points``: that
    many m evenly spaced from 0 to N instead, for large N: N + 1 integrations per draw cost
    an image model minutes each).

    One row per m: fraction m/N, mean MSE over ``samples`` draws, degradation
    ``(MSE_m - MSE_0) / (N (2a)^2)`` and ``within`` (this m and every smaller one within
    ``tolerance``). The study's f is the largest fraction with ``within``; report 1 - f.
    """
    n = image.numel()
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of the {n} coefficient indices")
    if points is not None and points < 2:
        raise ValueError(f"points must be at least 2 (m = 0 and m = N), got {points}")
    ms = (
        torch.arange(n + 1)
        if points is None
        else torch.linspace(0, n, min(points, n + 1)).round().long().unique()
    )
    x = image.reshape(-1).to(torch.float64)
    with torch.no_grad():
        cols = model.basis().detach()[:, order]  # (N, N) columns in perturbation order
    gen = torch.Generator().manual_seed(int(seed))
    xi = torch.randn(len(ms), samples, n, generator=gen, dtype=torch.float64)
    mask = (torch.arange(n)[None, :] < ms[:, None]).to(torch.float64)
    shift = sigma * (xi * mask[:, None, :]) @ cols.T  # (M, R, N): first m coefficients
    mse = _steady_mse(model, (x + shift).reshape(-1, n), label, t_end, dt, method)
    mse = mse.reshape(len(ms), samples).mean(dim=1)
    scale = n * (2 * model.a) ** 2
    degradation = (mse - mse[0]) / scale
    within = torch.cummin((degradation <= tolerance).to(torch.int64), dim=0).values.bool()
    return pd.DataFrame(
        {
            "m": ms.numpy(),
            "fraction": [int(m) / n for m in ms],
            "mse": mse.numpy(),
            "degradation": degradation.numpy(),
            "within": within.numpy(),
        }
    )


def robust_fraction(curve: pd.DataFrame) -> float:
    """f of Fig. 6: the largest fraction of coefficients perturbed together within tolerance."""
    return float(curve.loc[curve["within"], "fraction"].max())
