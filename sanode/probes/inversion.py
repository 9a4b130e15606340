"""Paper Figs. 9-12: pixel trajectories, and recovering the input by integrating backwards.

Forward: x(0) = image, integrate dx/dt = F(x) to T_inv. Backward: with tau = T_inv - t,
dx/dtau = -F(x), integrated from x(T_inv) over the same time, returns x(0) up to the
integration error (O(dt^order)) and the rounding errors of the forward pass amplified by the
backward flow away from the (forward-stable) attractor: the longer T_inv, the larger.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..core.integrate import integrate
from ..core.model import SANode


@torch.no_grad()
def pixel_trajectories(
    model: SANode, image: torch.Tensor, *, t_end: float, dt: float, every: int
) -> pd.DataFrame:
    """All N pixel values of one image over time: one row per (t, pixel)."""
    times, states = model.integrate(image.reshape(1, -1), t_end, dt, record_every=every)
    values = states[:, 0, :].to(torch.float64)  # (S, N)
    s, n = values.shape
    return pd.DataFrame(
        {
            "t": times.repeat_interleave(n).numpy(),
            "pixel": torch.arange(n).repeat(s).numpy(),
            "value": values.reshape(-1).numpy(),
        }
    )


@torch.no_grad()
def invert(
    model: SANode,
    images: torch.Tensor,
    *,
    t_inv: float,
    dt: float,
    method: str = "rk4",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward to ``t_inv`` and back. images (B, N) -> (x(T_inv), recovered x(0)), float64."""
    dyn = model.dynamics(dtype)  # A built in float64, cast to the loop dtype
    x0 = images.to(dtype)
    forward = integrate(dyn, x0, t_inv, dt, method=method)
    back = integrate(dyn, forward, t_inv, dt, method=method, reverse=True)
    return forward.to(torch.float64), back.to(torch.float64)


def inversion_grid(
    model: SANode,
    image: torch.Tensor,
    *,
    t_invs: list[float],
    dts: list[float],
    dtypes: list[str],
    method: str = "rk4",
) -> pd.DataFrame:
    """Reconstruction error of one image (N,) per (T_inv, dt, dtype): one row each.

    Columns: max_error (max |recovered - input|) and rms_error over the N pixels.
    """
    x = image.reshape(1, -1).to(torch.float64)
    rows = []
    for name in dtypes:
        dtype = getattr(torch, name)
        for dt in dts:
            for t_inv in t_invs:
                _, back = invert(model, x, t_inv=t_inv, dt=dt, method=method, dtype=dtype)
                err = (back - x).abs()
                rows.append(
                    {
                        "t_inv": float(t_inv),
                        "dt": float(dt),
                        "dtype": name,
                        "method": method,
                        "max_error": float(err.max()),
                        "rms_error": float(err.pow(2).mean().sqrt()),
                    }
                )
    return pd.DataFrame(rows)


def inversion_images(
    model: SANode,
    image: torch.Tensor,
    *,
    t_invs: list[float],
    dt: float,
    method: str = "rk4",
    dtype: str = "float64",
) -> pd.DataFrame:
    """The input, x(T_inv) and the recovered image per T_inv: one row per (t_inv, panel, pixel)."""
    x = image.reshape(1, -1).to(torch.float64)
    n = x.shape[1]
    frames = []
    for t_inv in t_invs:
        fwd, back = invert(model, x, t_inv=t_inv, dt=dt, method=method, dtype=getattr(torch, dtype))
        for panel, values in (("input", x[0]), ("forward", fwd[0]), ("recovered", back[0])):
            frames.append(
                pd.DataFrame(
                    {
                        "t_inv": float(t_inv),
                        "dt": float(dt),
                        "dtype": dtype,
                        "panel": panel,
                        "pixel": range(n),
                        "value": values.numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)
