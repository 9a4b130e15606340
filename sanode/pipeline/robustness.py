"""Evaluation of one trained model over a grid of test-noise levels (the pipeline's evaluate stage).

Produces tidy rows: accuracy buckets per eps_test, MSE(t) curves per eps_test, and the final
states and overlaps that later figures need.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ..config import TrainConfig
from ..core import metrics
from ..core.model import SANode
from ..core.noise import add_pixel_noise, noise_generator
from ..runtime import matmul_precision
from ..training.evaluate import evaluate
from .settings import EvaluateSettings

# the bucket summary's columns of an accuracy row, before the spread of m_f
ROW_KEYS = ("n", "exact", "partial", "wrong", "accuracy", "nearest_accuracy", "m_f")


@dataclass(frozen=True)
class RobustnessResult:
    accuracy: pd.DataFrame  # one row per eps_test
    mse: pd.DataFrame  # one row per (eps_test, t)
    states: dict[str, torch.Tensor]  # inputs, final states, overlaps at eps_test = first level


def score(
    model: SANode,
    cfg: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: EvaluateSettings,
    *,
    mse_items: int | None = None,
) -> RobustnessResult:
    """The one evaluation of a trained model (the pipeline's evaluate stage and ``sanode
    evaluate``): x (M, N), y (M,) scored at every test-noise level of ``settings.eps_test``
    with the model's time step, method, threshold and product precision, and where the
    settings leave them open its horizon ``t_eval`` and batch size.

    Noise is seeded per level, so every model sees the same inputs; with ``noise_seeds`` = R
    > 1 every level is scored on R independent draws (seeds ``seed .. seed+R-1``, column
    ``noise_seed``). The MSE(t) curve (eq. 6) uses the first ``mse_items`` items (the
    settings', or this argument's; 0: no curve) of each level's first draw, sampled every
    ``mse_every`` steps; the saved states are those of the first level's first draw.
    """
    if not settings.eps_test:
        raise ValueError("eps_test needs at least one noise level")
    mse_items = settings.mse_items if mse_items is None else mse_items
    if mse_items < 0:
        raise ValueError(f"mse_items must be >= 0, got {mse_items}")
    if settings.noise_seeds < 1:
        raise ValueError(f"noise_seeds must be >= 1, got {settings.noise_seeds}")
    t_end, dt, method = settings.horizon(cfg), cfg.dt, cfg.method
    batch_size = cfg.eval_batch_size if settings.batch_size is None else settings.batch_size
    run: dict[str, Any] = dict(
        t_end=t_end,
        dt=dt,
        method=method,
        batch_size=batch_size,
        threshold=cfg.threshold,
        tol=settings.tol,
    )
    rows, curves = [], []
    states: dict[str, torch.Tensor] = {}
    with matmul_precision(cfg.matmul_precision):
        for r, (i, eps) in itertools.product(
            range(settings.noise_seeds), enumerate(settings.eps_test)
        ):
            noise_seed = settings.seed + r
            noisy = add_pixel_noise(x, eps, noise_generator(noise_seed, i))
            res = evaluate(model, noisy, y, **run)
            mf = metrics.magnetization(res.states, model.patterns.cpu(), y, model.a)
            rows.append(
                {
                    "eps_test": float(eps),
                    "noise_seed": noise_seed,
                    **res.record(ROW_KEYS),
                    "m_f_std": float(mf.std()) if len(mf) > 1 else 0.0,
                    **res.record(("mse", "work_fraction")),
                }
            )
            if r > 0:
                continue
            if i == 0:
                states = {"inputs": noisy, "labels": y, "final": res.states, "overlap": res.overlap}
            if mse_items > 0:
                with torch.no_grad():
                    times, traj = model.integrate(
                        noisy[:mse_items], t_end, dt, method=method, record_every=settings.mse_every
                    )
                curve = metrics.mse_curve(traj.cpu(), model.patterns.cpu(), y[:mse_items])
                curves.append(
                    pd.DataFrame(
                        {"eps_test": float(eps), "t": times.numpy(), "mse": curve.double().numpy()}
                    )
                )
    mse = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame({"eps_test": [], "t": [], "mse": []}, dtype=float)
    )
    return RobustnessResult(pd.DataFrame(rows), mse, states)
