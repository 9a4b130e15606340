"""Fixed-step ODE integrators for the SA-nODE dynamics (a tiny solver registry).

The state is a batch of row vectors ``x`` of shape (B, N). The vector field is

    F(x) = c1 * x - c2 * x**3 + x @ L          (row convention; L = (beta A)^T)

with ``c1 = 4|gamma| a^2`` and ``c2 = 4|gamma|``. ``L`` is built once per call by
the model and stays fixed for every step of the integration.

A solver subclass supplies one step and its order; :func:`integrate` owns the loop,
the optional per-step state clip, reverse time and the recording of trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import overload

import torch

from .gemm import Weight


@dataclass(frozen=True)
class Dynamics:
    """The ingredients of F, in the dtype and on the device of the loop.

    Attributes:
        linear_t: (N, N) the transposed linear coupling ``(beta A)^T``, in the loop dtype or in
            bfloat16 (products in bfloat16, the rest of F in the loop dtype).
        c1: 0-dim tensor ``4|gamma| a^2``.
        c2: 0-dim tensor ``4|gamma|``.
        clip: absolute state bound applied after every step, or ``None``.
        linear_lo_t: (N, N) bfloat16 or ``None``: the rounding residual of a bfloat16
            ``linear_t``, ``(beta A)^T - linear_t`` rounded to bfloat16 ("bfloat16x2" products:
            two bfloat16 products per field, and A's rounding error drops from 2^-9 to 2^-17
            relative; only the state is still rounded to bfloat16).
        route: the products' route, ``"torch"``, ``"onednn"`` or ``"auto"``
            (:func:`sanode.core.gemm.gemm_route`), as the run's precision chose it.
    """

    linear_t: torch.Tensor
    c1: torch.Tensor
    c2: torch.Tensor
    clip: float | None = None
    linear_lo_t: torch.Tensor | None = None
    route: str = "auto"  # the products' route (sanode.core.gemm.gemm_route)
    # the products' packed operands (sanode.core.gemm), made on the first field without
    # gradients: [(hi, lo)], or [None] where the route is torch.mm
    _packed: list = dataclass_field(default_factory=list, init=False, repr=False, compare=False)

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) for x of shape (B, N); returns (B, N) in x's dtype."""
        local = x * (self.c1 - self.c2 * x * x)
        packed = self._weights(x)
        if self.linear_t.dtype == x.dtype:
            if packed is None:
                return torch.addmm(local, x, self.linear_t)
            return local.add_(packed[0](x))
        xp = x.to(self.linear_t.dtype)
        local.add_(xp @ self.linear_t if packed is None else packed[0](xp))
        if self.linear_lo_t is None:
            return local
        return local.add_(xp @ self.linear_lo_t if packed is None else packed[1](xp))

    def _weights(self, x: torch.Tensor) -> tuple[Weight, Weight] | None:
        """The products through :class:`sanode.core.gemm.Weight` (packed once), or None: the
        torch route, or a gradient to record (oneDNN's kernel has no autograd formula)."""
        if torch.is_grad_enabled() and (x.requires_grad or self.linear_t.requires_grad):
            return None
        if not self._packed:
            hi = Weight(self.linear_t, len(x), self.route)
            lo = self.linear_lo_t
            low = hi if lo is None else Weight(lo, len(x), self.route)
            self._packed.append(None if hi.packed is None else (hi, low))
        return self._packed[0]

    def reversed(self) -> Dynamics:
        """The field of dx/dtau = -F(x) (backward integration)."""
        lo = None if self.linear_lo_t is None else -self.linear_lo_t
        return Dynamics(-self.linear_t, -self.c1, -self.c2, self.clip, lo, self.route)


class Solver:
    """A one-step method: subclasses set ``order`` and implement :meth:`step`."""

    order: int

    def step(self, dyn: Dynamics, x: torch.Tensor, dt: float) -> torch.Tensor:
        raise NotImplementedError


class Euler(Solver):
    order = 1

    def step(self, dyn: Dynamics, x: torch.Tensor, dt: float) -> torch.Tensor:
        return x + dt * dyn.field(x)


class RK4(Solver):
    order = 4

    def step(self, dyn: Dynamics, x: torch.Tensor, dt: float) -> torch.Tensor:
        k1 = dyn.field(x)
        k2 = dyn.field(x + (0.5 * dt) * k1)
        k3 = dyn.field(x + (0.5 * dt) * k2)
        k4 = dyn.field(x + dt * k3)
        return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


SOLVERS: dict[str, type[Solver]] = {"euler": Euler, "rk4": RK4}


def get_solver(method: str) -> Solver:
    try:
        return SOLVERS[method]()
    except KeyError:
        raise ValueError(
            f"unknown integration method {method!r}; choose one of {sorted(SOLVERS)}"
        ) from None


def num_steps(t_end: float, dt: float) -> int:
    """``floor(t_end / dt)`` robust to rounding (5.5 / 0.1 gives 55 steps, not 54)."""
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"the time step dt must be a positive number, got {dt}")
    if not (t_end >= 0 and math.isfinite(t_end)):
        raise ValueError(f"the horizon t_end must be a non-negative number, got {t_end}")
    return math.floor(t_end / dt + 1e-9)


@overload
def integrate(
    dyn: Dynamics,
    x0: torch.Tensor,
    t_end: float,
    dt: float,
    *,
    method: str = ...,
    reverse: bool = ...,
    record_every: None = ...,
) -> torch.Tensor: ...
@overload
def integrate(
    dyn: Dynamics,
    x0: torch.Tensor,
    t_end: float,
    dt: float,
    *,
    method: str = ...,
    reverse: bool = ...,
    record_every: int,
) -> tuple[torch.Tensor, torch.Tensor]: ...
def integrate(
    dyn: Dynamics,
    x0: torch.Tensor,
    t_end: float,
    dt: float,
    *,
    method: str = "euler",
    reverse: bool = False,
    record_every: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrate dx/dt = F(x) (or dx/dtau = -F(x) with ``reverse``) for floor(t_end/dt) steps.

    Args:
        x0: (B, N) initial states.
        record_every: if given, also sample the state every that many steps.

    Returns:
        x(t_end) of shape (B, N); or, with ``record_every``, ``(times, states)`` with
        times of shape (S,) and states of shape (S, B, N), t = 0 and t_end included.
    """
    solver = get_solver(method)
    n = num_steps(t_end, dt)
    if record_every is not None and record_every < 1:
        raise ValueError(f"record_every must be a positive step count, got {record_every}")
    if reverse:
        dyn = dyn.reversed()
    x = x0
    times, states = [0.0], [x0]
    for i in range(1, n + 1):
        x = solver.step(dyn, x, dt)
        if dyn.clip is not None:
            x = x.clamp(-dyn.clip, dyn.clip)
        if record_every is not None and (i % record_every == 0 or i == n):
            times.append(i * dt)
            states.append(x)
    if record_every is None:
        return x
    return torch.tensor(times, dtype=torch.float64), torch.stack(states)
