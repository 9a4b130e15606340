"""The SA-nODE classifier: dx/dt = 4|gamma| (a^2 x - x^3) + beta A x with planted attractors."""

from __future__ import annotations

import math
from typing import Any, overload

import torch
from torch import nn

from . import products as products_mod
from .coupling import coupling_matrix
from .euler_grad import euler_loop
from .integrate import Dynamics, integrate, num_steps
from .patterns import check_patterns
from .products import TWO_PARTS, Products, dtype_name


class SANode(nn.Module):
    """Stable-attractor neural ODE.

    ``A = Phi diag(lambda) Phi^-1`` with ``Phi = [trainable N x (N-K) block | fixed N x K block]``:
    the fixed block is a QR-orthonormal basis of the span of the K planted ±a patterns, whose
    eigenvalues are pinned to 0, so every planted pattern lies in the kernel of A and is a fixed
    point of the dynamics. The N-K trainable eigenvalues are clipped strictly below the linear
    stability bound ``8 a^2 |gamma| / beta`` (minus ``margin``), so every planted pattern stays a
    stable attractor after any optimiser step.

    Parameters are kept in float64 and A is built in float64 (cond(Phi) reaches the thousands);
    the integration loop runs in ``dtype``.

    Args:
        patterns: (K, N) planted ±a patterns, e.g. ``block_patterns(N, K, a)``.
        a: well position of the double-well potential.
        gamma: initial gamma (trainable; the dynamics use |gamma|).
        beta: coupling scale, default ``1/sqrt(N)``.
        eig_mean, eig_std: the trainable eigenvalues start as N(eig_mean, eig_std).
        basis_gain: gain of the orthogonal initialisation of the trainable eigenvectors.
        clip: states are clipped to ``[-clip*a, clip*a]`` after each step; ``None`` disables.
        margin: the eigenvalues stay at most ``bound - margin``.
        dtype: dtype of the integration loop (float32 or float64).
        products: the training loop's (B, N) @ (N, N) products (:mod:`sanode.core.products`):
            ``None`` (the loop dtype) or ``"bfloat16"`` with a float32 loop (the state, the
            cubic term and the sums stay float32; A is still built in float64 and cast once
            per pass).
        eval_products: the products of integrations without gradients (evaluation,
            analyses); default: ``products``. Also ``"bfloat16x2"``: A split into a high and
            a low bfloat16 part, two products per step (A's bfloat16 rounding, which moves most
            items that change bucket, is gone). Both may be changed on a trained model.
        coupling_dtype: dtype in which the training pass builds A and backpropagates through
            it: torch.float64 (default) or torch.float32 (about half the time of the linear
            solve and its backward pass; the planted patterns are then projected back into A's
            kernel). Meant for bfloat16 products, whose rounding of A (relative error ~2e-3)
            is 10-100x the float32 build's; evaluation always builds A in float64.
        seed: seed of the initialisation.
    """

    patterns: torch.Tensor  # (K, N) float64 buffer
    basis_fixed: torch.Tensor  # (N, K) float64 buffer, orthonormal basis of the patterns' span

    def __init__(
        self,
        patterns: torch.Tensor,
        *,
        a: float = 0.5,
        gamma: float = 0.4,
        beta: float | None = None,
        eig_mean: float = -5.0,
        eig_std: float = 1.0,
        basis_gain: float = 1.15,
        clip: float | None = 10.0,
        margin: float = 0.1,
        dtype: torch.dtype = torch.float32,
        products: Products | str | None = None,
        eval_products: Products | str | None = None,
        coupling_dtype: torch.dtype = torch.float64,
        lapack: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_patterns(patterns, a)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if clip is not None and clip <= 1:
            raise ValueError(f"clip must be > 1 (in units of a) or None, got {clip}")
        k, n = patterns.shape
        self.a = float(a)
        self.beta = float(beta) if beta is not None else 1.0 / math.sqrt(n)
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        self.clip = None if clip is None else float(clip)
        self.margin = float(margin)
        self.dtype = dtype
        if coupling_dtype not in (torch.float64, torch.float32) or (
            coupling_dtype == torch.float32 and dtype != torch.float32
        ):
            raise ValueError(
                f"coupling_dtype must be torch.float64, or torch.float32 with a float32 loop; "
                f"got {coupling_dtype} with dtype {dtype}"
            )
        self.coupling_dtype = coupling_dtype
        self.lapack = lapack  # A's solves (sanode.core.coupling.lapack_route)
        # the run's whole precision (sanode.core.precision.Precision) where a config built the
        # model (sanode.training.checkpoint.model_from_config), else the products' own value
        self.precision: Any = None
        gen = torch.Generator().manual_seed(int(seed))
        patterns64 = patterns.detach().to(torch.float64).cpu()
        fixed, _ = torch.linalg.qr(patterns64.T)  # (N, K), same span as the patterns
        free = torch.empty(n, n - k, dtype=torch.float64)
        nn.init.orthogonal_(free, gain=basis_gain, generator=gen)
        eig = torch.randn(n - k, generator=gen, dtype=torch.float64) * eig_std + eig_mean
        self.register_buffer("patterns", patterns64)
        self.register_buffer("basis_fixed", fixed)
        self.basis_free = nn.Parameter(free)
        self.eig_free = nn.Parameter(eig)
        self.gamma = nn.Parameter(torch.tensor(float(gamma), dtype=torch.float64))
        self.products = products  # parsed and checked by the setters
        self.eval_products = self.products if eval_products is None else eval_products

    # -- sizes ---------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return self.patterns.shape[1]

    @property
    def num_classes(self) -> int:
        return self.patterns.shape[0]

    # -- spectral parametrisation ----------------------------------------------------------
    def stability_bound(self) -> torch.Tensor:
        """The linear-stability bound ``8 a^2 |gamma| / beta`` (0-dim, float64)."""
        return 8.0 * self.a**2 * self.gamma.abs() / self.beta

    def eigenvalues(self) -> torch.Tensor:
        """(N,) eigenvalues of A: the N-K trainable ones clipped below the bound, then K zeros."""
        top = self.stability_bound() - self.margin
        free = torch.minimum(self.eig_free, top)
        return torch.cat([free, free.new_zeros(self.num_classes)])

    def basis(self) -> torch.Tensor:
        """(N, N) eigenvector matrix Phi = [trainable block | fixed pattern block]."""
        return torch.cat([self.basis_free, self.basis_fixed], dim=1)

    def coupling(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """(N, N) coupling ``A = Phi diag(lambda) Phi^-1`` in ``dtype`` (float64 or float32):
        one LU of Phi and a solve, no inverse (:func:`sanode.core.coupling.coupling_matrix`).
        Below float64 the solve's error would leave the planted patterns slightly outside A's
        kernel (|A p| ~ 3e-4 in float32 at initialisation), so A is projected onto the
        complement of their span, ``A - (A U) U^T`` (U: the fixed orthonormal block): the
        same A in exact arithmetic, with |A p| at float32 rounding (~2e-5)."""
        return coupling_matrix(
            self.basis_free,
            self.eigenvalues(),
            self.basis_fixed,
            dtype,
            lapack=self.lapack,
            gemm_route=self.products.route,
        )

    @property
    def products(self) -> Products:
        """The training loop's matrix products."""
        return self._products

    @products.setter
    def products(self, value: Products | str | None) -> None:
        self._products = self._parse(value, training=True)

    @property
    def eval_products(self) -> Products:
        """The matrix products of integrations without gradients (evaluation, analyses)."""
        return self._eval_products

    @eval_products.setter
    def eval_products(self, value: Products | str | None) -> None:
        self._eval_products = self._parse(value, training=False)

    def _parse(self, value: Products | str | None, *, training: bool) -> Products:
        """Products from a setting: ``auto`` on the CPU is measured for this model's N
        (:func:`sanode.core.precision.measured`, at the default batch sizes; a run passes
        the :class:`Products` its config resolved on its own shapes)."""
        where = self._where()
        loop = dtype_name(self.dtype)
        if value == products_mod.AUTO and (where is None or where.type == "cpu"):
            from .precision import measured

            return measured(value, loop, n=self.patterns.shape[1], training=training)
        return Products.parse(value, loop, training=training, device=where)

    def _where(self) -> torch.device | None:
        """The device ``auto`` products are chosen for: the model's (the CPU while it is
        built; set the products again after moving it, or pass resolved ones)."""
        patterns = self._buffers.get("patterns") if "_buffers" in self.__dict__ else None
        return None if patterns is None else patterns.device

    @staticmethod
    def _product_dtype(products: Products, loop: torch.dtype) -> torch.dtype:
        """bfloat16 products apply to a float32 loop; another loop multiplies in its dtype."""
        if products.dtype == torch.bfloat16 and loop == torch.float32:
            return torch.bfloat16
        return loop

    def dynamics(
        self,
        dtype: torch.dtype | None = None,
        *,
        products: Products | None = None,
        coupling_dtype: torch.dtype = torch.float64,
    ) -> Dynamics:
        """The vector field's ingredients in the loop ``dtype`` (default: the model's); A is
        built once here (in ``coupling_dtype``, default float64) and cast once to the
        ``products`` (default :attr:`eval_products`; bfloat16x2: two bfloat16 parts)."""
        linear64 = (self.beta * self.coupling(coupling_dtype)).T
        return self._dynamics(linear64, dtype, products)

    def _dynamics(
        self, linear64: torch.Tensor, dtype: torch.dtype | None, products: Products | None
    ) -> Dynamics:
        """:meth:`dynamics` from an already built float64 ``(beta A)^T`` (N, N)."""
        dtype = dtype or self.dtype
        products = products or self.eval_products
        g = self.gamma.abs()
        product_dtype = self._product_dtype(products, dtype)
        linear_t = linear64.to(product_dtype)
        lo = None
        if product_dtype == torch.bfloat16 and products.two_parts:
            lo = (linear64 - linear_t.to(linear64.dtype)).to(product_dtype)
        c2 = (4.0 * g).to(dtype)
        c1 = (4.0 * self.a**2 * g).to(dtype)
        clip = None if self.clip is None else self.clip * self.a
        return Dynamics(linear_t, c1, c2, clip, lo, route=products.route)

    def early_exit_dynamics(
        self, products: Products | None = None
    ) -> tuple[Dynamics, Dynamics | None]:
        """(dynamics with ``products`` (default :attr:`eval_products`), the loop-dtype
        dynamics that finishes an early-exit run when those products are bfloat16, else None);
        see :func:`sanode.core.converge.integrate_until_converged`. A is built once for both."""
        linear64 = (self.beta * self.coupling()).T
        dyn = self._dynamics(linear64, None, products or self.eval_products)
        if dyn.linear_t.dtype == self.dtype:
            return dyn, None
        return dyn, self._dynamics(linear64, None, Products(dtype_name(self.dtype)))

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) = 4|gamma|(a^2 x - x^3) + beta A x for x of shape (B, N); returns (B, N)."""
        return self.dynamics(x.dtype).field(x)

    # -- integration -----------------------------------------------------------------------
    def _as_state(self, x0: torch.Tensor) -> torch.Tensor:
        if x0.ndim != 2 or x0.shape[1] != self.num_nodes:
            raise ValueError(
                f"expected states of shape (B, {self.num_nodes}), got {tuple(x0.shape)}; "
                "flatten images row-major first"
            )
        return x0.to(device=self.gamma.device, dtype=self.dtype)

    def forward(
        self,
        x0: torch.Tensor,
        t_end: float,
        dt: float,
        method: str = "euler",
        *,
        grad_segment: int | str | None = None,
        fuse_steps: bool = False,
    ) -> torch.Tensor:
        """x(t_end) from x(0) = x0 (B, N); differentiable. Euler uses the lean backward pass.

        ``grad_segment`` (Euler only): keep one state in every ``grad_segment`` steps for the
        backward pass and recompute the others (``"auto"``: sqrt of the step count); trades a
        fourth matrix product per step for memory; gradients are unchanged. ``fuse_steps``
        (Euler with bfloat16 products only): each step's elementwise work in one compiled
        kernel (:mod:`sanode.core.fused`), float32 rounding apart the same. Products: the
        training ones (:attr:`products`) where gradients are recorded, else
        :attr:`eval_products`.
        """
        x0 = self._as_state(x0)
        if method == "euler" and torch.is_grad_enabled():
            own = Products(dtype_name(self.dtype))  # A in the loop dtype, cast below
            dyn = self.dynamics(self.dtype, products=own, coupling_dtype=self.coupling_dtype)
            w = dt * dyn.linear_t
            p = 1.0 + dt * dyn.c1
            q = dt * dyn.c2
            n = num_steps(t_end, dt)
            return euler_loop(
                x0,
                w,
                p,
                q,
                n,
                clip=dyn.clip,
                segment=grad_segment,
                mm_dtype=self._product_dtype(self.products, self.dtype),
                fused=fuse_steps,
                route=self.products.route,
            )
        training = self.products if torch.is_grad_enabled() else None  # else eval_products
        return integrate(self.dynamics(products=training), x0, t_end, dt, method=method)

    @overload
    def integrate(
        self,
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
        self,
        x0: torch.Tensor,
        t_end: float,
        dt: float,
        *,
        method: str = ...,
        reverse: bool = ...,
        record_every: int,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def integrate(
        self,
        x0: torch.Tensor,
        t_end: float,
        dt: float,
        *,
        method: str = "euler",
        reverse: bool = False,
        record_every: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Integrate from x0 (B, N) over floor(t_end/dt) steps with plain autograd.

        ``reverse=True`` integrates dx/dtau = -F(x) (the paper's inversion). With
        ``record_every`` returns ``(times (S,), states (S, B, N))``; else x(t_end) (B, N).
        Products: :attr:`eval_products` (this is the analyses' integration).
        """
        return integrate(
            self.dynamics(),
            self._as_state(x0),
            t_end,
            dt,
            method=method,
            reverse=reverse,
            record_every=record_every,
        )

    # -- analysis --------------------------------------------------------------------------
    @torch.no_grad()
    def stability_report(self, *, numeric: bool = False) -> dict[str, float]:
        """Linear stability of the planted attractors (:func:`sanode.core.stability.report`)."""
        from .stability import report

        return report(self, numeric=numeric)

    def __setstate__(self, state: dict) -> None:
        """Unpickle, also a model pickled before the products value (an MLflow registry
        version of older code: ``_matmul_dtype`` and ``split_products`` held the products that
        load_model had set for evaluation)."""
        if "_matmul_dtype" in state:
            old, two = state.pop("_matmul_dtype"), state.pop("split_products", False)
            loop = dtype_name(state["dtype"])
            name = loop if old is None else dtype_name(old)
            state["_eval_products"] = Products(TWO_PARTS if two and name == "bfloat16" else name)
            state["_products"] = Products(name)
        state.setdefault("lapack", "auto")  # pickled before the solves' route was the model's
        state.setdefault("precision", None)
        super().__setstate__(state)

    def extra_repr(self) -> str:
        return (
            f"N={self.num_nodes}, K={self.num_classes}, a={self.a}, beta={self.beta:.4g}, "
            f"clip={self.clip}, dtype={self.dtype}, products={self.products}"
            + (
                ""
                if self.eval_products == self.products
                else f", eval_products={self.eval_products}"
            )
            + (
                ""
                if self.coupling_dtype == torch.float64
                else f", coupling_dtype={self.coupling_dtype}"
            )
        )
