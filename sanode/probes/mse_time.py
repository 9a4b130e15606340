"""Paper Fig. 4: MSE(t) on noisy copies of one image, and the histogram of the final MSE."""

from __future__ import annotations

import pandas as pd
import torch

from ..core import metrics
from ..core.model import SANode
from ..core.noise import add_pixel_noise, noise_generator


@torch.no_grad()
def mse_over_time(
    model: SANode,
    image: torch.Tensor,
    label: int,
    *,
    eps_test: list[float],
    items: int,
    t_end: float,
    dt: float,
    method: str = "euler",
    every: int = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Integrate ``items`` noisy copies of ``image`` (N,) at every test-noise level.

    Returns:
        curves: one row per (eps_test, t): the MSE of eq. 6 (mean over the copies of
            ``||x(t) - phi_label||^2``) and its standard deviation over the copies.
        finals: one row per (eps_test, item): the final per-item MSE and whether the copy
            ended on its own attractor (every pixel on the right side, m_f = 1).
    """
    if items < 1:
        raise ValueError(f"items must be >= 1, got {items}")
    x = image.reshape(1, -1).expand(items, -1).contiguous()
    y = torch.full((items,), int(label), dtype=torch.int64)
    patterns = model.patterns.cpu()
    curves, finals = [], []
    for i, eps in enumerate(eps_test):
        noisy = add_pixel_noise(x, eps, noise_generator(seed, i))
        times, traj = model.integrate(noisy, t_end, dt, method=method, record_every=every)
        traj = traj.cpu().to(torch.float64)
        per_item = ((traj - patterns[y].unsqueeze(0)) ** 2).sum(dim=2)  # (S, items)
        curves.append(
            pd.DataFrame(
                {
                    "eps_test": float(eps),
                    "t": times.numpy(),
                    "mse": per_item.mean(dim=1).numpy(),
                    "mse_std": per_item.std(dim=1).numpy() if items > 1 else 0.0,
                }
            )
        )
        overlap = metrics.sign_overlap(traj[-1], patterns, y)
        finals.append(
            pd.DataFrame(
                {
                    "eps_test": float(eps),
                    "item": range(items),
                    "final_mse": per_item[-1].numpy(),
                    "on_target": (overlap >= 1.0).numpy(),
                }
            )
        )
    return pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True)
