"""Evaluation of one trained model over a grid of test-noise levels (the pipeline's evaluate stage).

Produces tidy rows: accuracy buckets per eps_test, MSE(t) curves per eps_test, and the final
states and overlaps that later figures need. With a ``cache`` folder every finished (draw,
level) cell's row and curve is kept there, keyed by the model's weights, the test data and
the settings, so a stopped evaluation (or one rerun on another machine, the folder carried
along) scores only the cells it has not scored yet.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import files
from ..config import TrainConfig
from ..core import metrics
from ..core.model import SANode
from ..core.noise import add_pixel_noise, noise_generator
from ..runtime import matmul_precision
from ..training.evaluate import evaluate
from . import kept as keep
from .settings import EvaluateSettings

log = logging.getLogger(__name__)

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
    cache: str | os.PathLike | None = None,
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

    ``cache``: a folder keeping each scored cell (:mod:`sanode.pipeline.kept`) but the first (whose
    states are returned); a cell found there is read instead of scored again (the same
    numbers: the scoring is deterministic). Its files are a few kB each.
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
    # the model's weights and buffers and the test data, bit for bit
    identity = (
        keep.tensor_digest([*sorted(model.state_dict().items()), ("x", x), ("y", y)])
        if cache is not None
        else ""
    )
    with matmul_precision(cfg.matmul_precision):
        cells = list(itertools.product(range(settings.noise_seeds), enumerate(settings.eps_test)))
        for done, (r, (i, eps)) in enumerate(cells, 1):
            noise_seed = settings.seed + r
            cell = {
                **run,
                "eps": float(eps),
                "level": i,
                "noise_seed": noise_seed,
                "mse_items": mse_items if r == 0 else 0,
                "mse_every": settings.mse_every,
                "matmul_precision": str(cfg.matmul_precision),
                "eval_products": str(model.eval_products),
            }
            path = Path(cache, f"{keep.key(identity=identity, **cell)}.pt") if cache else None
            # the first cell is scored every time: its final states (tens of MB for 10,000
            # images) are saved, not cached, and it is the cheapest level (the least noise)
            start = time.perf_counter()
            if path is not None and path.is_file() and (r, i) != (0, 0):
                kept = torch.load(path, map_location="cpu", weights_only=True)
                how = "read back"
            else:
                kept = _score_cell(model, x, y, eps, i, r, noise_seed, mse_items, run, settings)
                if path is not None and (r, i) != (0, 0):
                    files.write_torch(path, kept, what="scored cell")
                how = f"{time.perf_counter() - start:.0f} s"
            log.info(
                "eps_test %g, noise draw %d (cell %d/%d): H %.4f (%s)",
                eps, noise_seed, done, len(cells), kept["row"]["accuracy"], how,
            )  # fmt: skip
            rows.append(kept["row"])
            if r == 0 and i == 0:
                states = kept["states"]
            if r == 0 and mse_items > 0:
                curves.append(
                    pd.DataFrame(
                        {"eps_test": float(eps), "t": kept["t"].numpy(), "mse": kept["mse"].numpy()}
                    )
                )
    mse = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame({"eps_test": [], "t": [], "mse": []}, dtype=float)
    )
    return RobustnessResult(pd.DataFrame(rows), mse, states)


def _score_cell(
    model: SANode,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    i: int,
    r: int,
    noise_seed: int,
    mse_items: int,
    run: dict[str, Any],
    settings: EvaluateSettings,
) -> dict[str, Any]:
    """One (draw ``r``, level ``i``) cell of :func:`score`: its accuracy row, and for the first
    draw its MSE(t) curve (``t``, ``mse``; empty without ``mse_items``) and, at the first
    level, its ``states``."""
    noisy = add_pixel_noise(x, eps, noise_generator(noise_seed, i))
    res = evaluate(model, noisy, y, **run)
    mf = metrics.magnetization(res.states, model.patterns.cpu(), y, model.a)
    row = {
        "eps_test": float(eps),
        "noise_seed": noise_seed,
        **res.record(ROW_KEYS),
        "m_f_std": float(mf.std()) if len(mf) > 1 else 0.0,
        **res.record(("mse", "work_fraction")),
    }
    kept: dict[str, Any] = {"row": row, "states": {}, "t": torch.empty(0), "mse": torch.empty(0)}
    if r > 0:
        return kept
    if i == 0:
        kept["states"] = {"inputs": noisy, "labels": y, "final": res.states, "overlap": res.overlap}
    if mse_items > 0:
        with torch.no_grad():
            times, traj = model.integrate(
                noisy[:mse_items],
                run["t_end"],
                run["dt"],
                method=run["method"],
                record_every=settings.mse_every,
            )
        curve = metrics.mse_curve(traj.cpu(), model.patterns.cpu(), y[:mse_items])
        kept["t"], kept["mse"] = times.cpu(), curve.double()
    return kept
