"""The coupling matrix ``A = Phi diag(lambda) Phi^-1`` and its backward pass, one LU a build.

``A Phi = Phi Lambda``, so A solves ``X Phi = Phi Lambda`` with the LU factors of Phi;
the backward pass of a loss L with G = dL/dA reuses them: ``M = G Phi^-T`` (one more
solve), ``dL/dPhi = M Lambda - A^T M`` (one product) and ``dL/dlambda = diag(Phi^T M)``. That is
what autograd does through ``torch.linalg.solve``; written out, the two solves can run in
either of two LAPACKs (a run's choice travels with its precision,
:mod:`sanode.core.precision`, as the ``lapack`` argument of :func:`coupling_matrix`; there
is no process-wide switch):

* ``"openblas"``: scipy's ``getrs`` on the factors torch computed (torch's ``getrf`` is the
  faster of the two here). On the 2-core AMD EPYC measured in ``docs/performance.md`` a
  float32 solve with 784 right-hand sides takes 4.8 ms against torch's 8.8 ms. CPU tensors
  only, and only where :mod:`sanode.core.lapack_env`'s thread settings are in force (without
  them the two libraries' threads spin against each other and a training step ran 2x slower).
  scipy's OpenBLAS runs as many threads as torch (:func:`torch.get_num_threads`).
* ``"torch"``: ``torch.linalg.lu_solve`` (any device).

Below float64 the solve's rounding leaves the planted patterns slightly outside A's kernel, so A
is projected onto the complement of their span, ``A - (A U) U^T`` (U: their orthonormal basis;
the same A in exact arithmetic) and G onto it in the backward pass.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from . import gemm, lapack_env

ROUTES = ("auto", "openblas", "torch")


def lapack_route(device: torch.device, dtype: torch.dtype, route: str = "auto") -> str:
    """The LAPACK (``"openblas"`` or ``"torch"``) that solves for A on ``device`` in ``dtype``,
    asked for as ``route`` (``"auto"``: OpenBLAS on the CPU where
    :func:`sanode.core.lapack_env.in_force`, else torch; ``"openblas"`` on the CPU whatever
    the thread settings, e.g. to measure)."""
    if route not in ROUTES:
        raise ValueError(f"unknown LAPACK route {route!r}; choose one of {list(ROUTES)}")
    if device.type != "cpu" or _getrs(dtype) is None or route == "torch":
        return "torch"
    return "openblas" if route == "openblas" or lapack_env.in_force() else "torch"


@functools.cache
def _getrs(dtype: torch.dtype) -> Any:
    """scipy's ``sgetrs`` / ``dgetrs`` for ``dtype``, or None (no scipy, another dtype)."""
    try:
        from scipy.linalg import lapack
    except ImportError:  # pragma: no cover - scipy is a dependency
        return None
    return {torch.float32: lapack.sgetrs, torch.float64: lapack.dgetrs}.get(dtype)


_threads = 0


def _match_threads() -> None:
    """OpenBLAS runs as many threads as torch (checked at every solve, set on a change)."""
    global _threads
    n = torch.get_num_threads()
    if n != _threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
        _threads = n


def _solve(
    lu: torch.Tensor, pivots: torch.Tensor, rhs: torch.Tensor, route: str, adjoint: bool
) -> torch.Tensor:
    """X (N, N) row-major with ``X Phi = R`` (``adjoint``: ``X Phi^T = R``) for R = ``rhs``
    (N, N; any strides for torch, row-major for OpenBLAS, which may overwrite it), (lu, pivots)
    the LU factors of Phi."""
    if route == "torch":
        return torch.linalg.lu_solve(lu, pivots, rhs, left=False, adjoint=adjoint)
    _match_threads()
    # X Phi = R <=> Phi^T X^T = R^T (trans=1); X Phi^T = R <=> Phi X^T = R^T (trans=0); R^T
    # and X^T column-major are R and X row-major, so neither is copied
    x, info = _getrs(lu.dtype)(
        lu.numpy(), (pivots - 1).numpy(), rhs.numpy().T, trans=int(not adjoint), overwrite_b=1
    )
    if info != 0:  # pragma: no cover - only for malformed arguments
        raise RuntimeError(f"LAPACK getrs failed with info={info}")
    return torch.from_numpy(x.T)


class _Coupling(torch.autograd.Function):
    """A (N, N) in ``dtype`` from the free eigenvectors (N, N-K), all N eigenvalues and the
    fixed orthonormal block U (N, K); gradients for the first two (in their dtype)."""

    @staticmethod
    def forward(
        ctx: Any,
        free: torch.Tensor,
        eigenvalues: torch.Tensor,
        fixed: torch.Tensor,
        dtype: torch.dtype,
        lapack: str,
        gemm_route: str,
    ) -> torch.Tensor:
        n, m = free.shape
        phi = torch.empty(n, n, dtype=dtype, device=free.device)
        phi[:, :m].copy_(free)
        phi[:, m:].copy_(fixed)
        lam = eigenvalues.to(dtype)
        # LU of Phi, not Phi^T: partial pivoting is blind to the scale of Phi's columns (the
        # eigenvectors' norms, which training spreads), not to that of its rows
        lu, pivots = torch.linalg.lu_factor(phi)  # raises for a singular Phi
        route = lapack_route(phi.device, dtype, lapack)
        a = _solve(lu, pivots, phi * lam, route, adjoint=False)  # A Phi = Phi Lambda
        u = None
        if dtype != torch.float64:
            u = fixed.to(dtype)
            a.addmm_(a @ u, u.T, alpha=-1.0)
        ctx.save_for_backward(phi, lam, lu, pivots, a, u)
        ctx.route, ctx.gemm, ctx.free_columns = route, gemm_route, m
        ctx.grad_dtypes = (free.dtype, eigenvalues.dtype)
        return a

    @staticmethod
    @once_differentiable  # no second derivatives through A (a clear error if asked for)
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        phi, lam, lu, pivots, a, u = ctx.saved_tensors
        g = grad.to(phi.dtype)
        if u is not None:
            g = torch.addmm(g, g @ u, u.T, alpha=-1.0)  # a new tensor: the solve may overwrite
        elif ctx.route == "openblas":
            g = g.clone(memory_format=torch.contiguous_format)
        m_ = _solve(lu, pivots, g, ctx.route, adjoint=True)  # M Phi^T = G
        k = ctx.free_columns
        grad_free = gemm.addmm_(m_[:, :k] * lam[:k], a.T, m_[:, :k], alpha=-1.0, route=ctx.gemm)
        grad_lam = (phi * m_).sum(0)
        free_dtype, lam_dtype = ctx.grad_dtypes
        return grad_free.to(free_dtype), grad_lam.to(lam_dtype), None, None, None, None


def coupling_matrix(
    free: torch.Tensor,
    eigenvalues: torch.Tensor,
    fixed: torch.Tensor,
    dtype: torch.dtype,
    *,
    lapack: str = "auto",
    gemm_route: str = "auto",
) -> torch.Tensor:
    """(N, N) ``A = Phi diag(eigenvalues) Phi^-1`` in ``dtype`` (float32 or float64) with
    ``Phi = [free | fixed]``: free (N, N-K) trainable eigenvectors, fixed (N, K) the planted
    patterns' orthonormal basis, eigenvalues (N,) (the last K are the fixed block's zeros).
    Differentiable in ``free`` and ``eigenvalues``; below float64 projected off the fixed span.
    ``lapack``: the solves' route (:func:`lapack_route`); ``gemm_route``: that of the backward
    pass's (N, N) product (:func:`sanode.core.gemm.gemm_route`)."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"A is built in torch.float32 or torch.float64, got {dtype}")
    n, m = free.shape
    if fixed.shape != (n, n - m) or eigenvalues.shape != (n,):
        raise ValueError(
            f"expected free (N, N-K), fixed (N, K) and eigenvalues (N,); got "
            f"{tuple(free.shape)}, {tuple(fixed.shape)} and {tuple(eigenvalues.shape)}"
        )
    out = _Coupling.apply(free, eigenvalues, fixed, dtype, lapack, gemm_route)
    assert isinstance(out, torch.Tensor)
    return out
