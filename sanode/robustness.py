"""Evaluation of one trained model over a grid of test-noise levels (the pipeline's evaluate stage).

Produces tidy rows: accuracy buckets per eps_test, MSE(t) curves per eps_test, and the final
states and overlaps that later figures need.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from . import metrics
from .config import TrainConfig, matmul_precision
from .evaluate import evaluate
from .model import SANode
from .noise import add_pixel_noise, noise_generator
from .settings import EvaluateSettings


@dataclass(frozen=True)
class RobustnessResult:
    accuracy: pd.DataFrame  # one row per eps_test
    mse: pd.DataFrame  # one row per (eps_test, t)
    states: dict[str, torch.Tensor]  # inputs, final states, overlaps at eps_test = first level


def evaluate_noise_grid(
    model: SANode,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_test: list[float],
    t_end: float,
    dt: float,
    method: str = "euler",
    threshold: float = 0.95,
    batch_size: int = 2000,
    seed: int = 0,
    mse_items: int = 200,
    mse_every: int = 10,
    tol: float | None = None,
    noise_seeds: int = 1,
) -> RobustnessResult:
    """Score ``model`` on x (M, N), y (M,) at every test-noise level of ``eps_test``.

    The MSE(t) curve (eq. 6) uses the first ``mse_items`` items of each noisy set, sampled
    every ``mse_every`` steps (``mse_items`` = 0: no curve). Noise is seeded per level, so
    every model sees the same inputs.
    With ``noise_seeds`` = R > 1 every level is scored on R independent noise draws (seeds
    ``seed .. seed+R-1``, column ``noise_seed``): the spread of the scores over the draws.
    The MSE curves and the saved states use the first draw.
    """
    if not eps_test:
        raise ValueError("eps_test needs at least one noise level")
    if mse_items < 0:
        raise ValueError(f"mse_items must be >= 0, got {mse_items}")
    if noise_seeds < 1:
        raise ValueError(f"noise_seeds must be >= 1, got {noise_seeds}")
    rows, curves = [], []
    states: dict[str, torch.Tensor] = {}
    for r in range(noise_seeds):
        for i, eps in enumerate(eps_test):
            noisy = add_pixel_noise(x, eps, noise_generator(seed + r, i))
            res = evaluate(
                model,
                noisy,
                y,
                t_end=t_end,
                dt=dt,
                method=method,
                batch_size=batch_size,
                threshold=threshold,
                tol=tol,
            )
            mf = metrics.magnetization(res.states, model.patterns.cpu(), y, model.a)
            rows.append(
                {
                    "eps_test": float(eps),
                    "noise_seed": seed + r,
                    **res.record(
                        ("n", "exact", "partial", "wrong", "accuracy", "nearest_accuracy", "m_f")
                    ),
                    "m_f_std": float(mf.std()) if len(mf) > 1 else 0.0,
                    **res.record(("mse", "work_fraction")),
                }
            )
            if r > 0:
                continue
            if i == 0:
                states = {
                    "inputs": noisy,
                    "labels": y,
                    "final": res.states,
                    "overlap": res.overlap,
                }
            if mse_items == 0:
                continue
            with torch.no_grad():
                times, traj = model.integrate(
                    noisy[:mse_items], t_end, dt, method=method, record_every=mse_every
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
    evaluate``): :func:`evaluate_noise_grid` with the ``evaluate`` settings, the model's
    time step, method, threshold and product precision, and where the settings leave them
    open its horizon ``t_eval`` and batch size. ``mse_items`` overrides the settings'."""
    with matmul_precision(cfg.matmul_precision):
        return evaluate_noise_grid(
            model,
            x,
            y,
            eps_test=list(settings.eps_test),
            t_end=settings.horizon(cfg),
            dt=cfg.dt,
            method=cfg.method,
            threshold=cfg.threshold,
            batch_size=cfg.eval_batch_size if settings.batch_size is None else settings.batch_size,
            seed=settings.seed,
            mse_items=settings.mse_items if mse_items is None else mse_items,
            mse_every=settings.mse_every,
            tol=settings.tol,
            noise_seeds=settings.noise_seeds,
        )
