"""The forward steps of the lean Euler loop (:mod:`sanode.core.euler_grad`): one step's
product with the fixed (N, N) operand, mixed bfloat16 operands kept in reused buffers, and a
pass of steps eager or fused (:mod:`sanode.core.fused`)."""

from __future__ import annotations

import torch

from .gemm import Weight


class _Product:
    """``out = scale * factor + x @ w`` for (B, N) states ``x`` and a fixed (N, N) ``w``.

    With ``w`` in the states' dtype this is a multiply and one ``addmm`` (or, on oneDNN's route,
    :mod:`sanode.core.gemm`, the product with ``w`` packed once and one ``addcmul``). With
    bfloat16 ``w`` (a float32 loop) ``x`` is cast into a reused bfloat16 buffer, the product
    written into a reused buffer (torch.mm) or a fresh one (oneDNN), copied into ``out`` and
    ``scale * factor`` added in one ``addcmul_``: fresh operands and results for every product
    cost about a quarter of the product itself on a CPU, and a mixed-dtype add (float32 +
    bfloat16) twice the plain passes.
    """

    def __init__(self, w: torch.Tensor, like: torch.Tensor, route: str = "auto") -> None:
        self.w = w
        self.weight = Weight(w, like.shape[0], route)  # the run's route (torch.mm or oneDNN)
        self.mixed = w.dtype != like.dtype
        if self.mixed:
            self.operand = torch.empty(like.shape, dtype=w.dtype, device=like.device)
            self.result = torch.empty(
                (like.shape[0], w.shape[1]), dtype=w.dtype, device=like.device
            )

    def add(
        self,
        scale: torch.Tensor,
        factor: torch.Tensor,
        x: torch.Tensor,
        out: torch.Tensor,
        operand: torch.Tensor | None = None,
    ) -> None:
        """out = scale * factor + x @ w (``scale`` is scratch: it may be overwritten);
        ``operand`` (mixed only): where to cast x (default: the reused buffer), e.g. a row that
        a later product reads again."""
        if not self.mixed:
            if self.weight.packed is None:
                torch.addmm(scale.mul_(factor), x, self.w, out=out)
            else:
                torch.addcmul(self.weight(x), scale, factor, out=out)
            return
        operand = self.operand if operand is None else operand
        operand.copy_(x)
        out.copy_(self.weight(operand, out=self.result))
        out.addcmul_(scale, factor)


def _step(x: torch.Tensor, product: _Product, p, qf: float, clip, out, tmp, operand=None) -> None:
    """out = clamp(x * (p - q x^2) + x @ w); ``p`` a 0-dim tensor in x's dtype, ``tmp``
    scratch of x's shape; ``operand`` (mixed products): where x's cast is kept."""
    torch.addcmul(p, x, x, value=-qf, out=tmp)
    product.add(tmp, x, x, out, operand)
    if clip is not None:
        out.clamp_(-clip, clip)


class _Stepper:
    """The forward steps of one pass: eager passes (:func:`_step`) or, with ``fused`` and
    bfloat16 products, one product and one compiled kernel a step (:mod:`sanode.core.fused`).

    ``step(x, out, lo, lo_next)``: out = x_{k+1} from x = x_k; ``lo`` (mixed products) holds
    x_k's bfloat16 cast after the call (the fused kernel wrote it a step earlier, see
    :meth:`begin`), ``lo_next`` gets x_{k+1}'s (fused only).
    """

    def __init__(self, w, like, pf: float, qf: float, clip, fused: bool, route="auto") -> None:
        self.product = _Product(w, like, route)
        self.fused = fused and self.product.mixed
        self.qf, self.clip = qf, clip
        self.p = torch.tensor(pf, dtype=like.dtype, device=like.device)
        self.tmp = torch.empty_like(like)
        # fused: where the casts go when the caller keeps none (this step's and the next one's);
        # the eager steps cast into the product's own operand buffer instead
        self.lo: list[torch.Tensor | None] = [None, None]
        if self.fused:
            from .fused import kernel

            self.q = torch.tensor(qf, dtype=like.dtype, device=like.device)
            self.lo = [torch.empty_like(like, dtype=w.dtype) for _ in range(2)]
            self.kernel = kernel("forward")

    def begin(self, x: torch.Tensor, lo: torch.Tensor | None) -> None:
        """Before the first step from ``x``: its cast into ``lo`` (fused only)."""
        if self.fused:
            assert lo is not None
            lo.copy_(x)

    def step(self, x, out, lo=None, lo_next=None) -> None:
        if not self.fused:
            _step(x, self.product, self.p, self.qf, self.clip, out, self.tmp, lo)
            return
        r = self.product.weight(lo, out=self.product.result)
        self.kernel(x, r, out, lo_next, self.p, self.q, self.clip)

    def run(self, span: torch.Tensor, lows: torch.Tensor | None) -> None:
        """Fill span[1:] from span[0] (S+1 states); ``lows`` (mixed): span[k]'s casts, k < S."""
        n = span.shape[0] - 1
        if lows is None:  # products in the loop dtype
            for k in range(n):
                self.step(span[k], span[k + 1])
            return
        self.begin(span[0], lows[0])
        for k in range(n):
            self.step(span[k], span[k + 1], lows[k], lows[k + 1] if k + 1 < n else self.lo[0])


def _on_clip(states: torch.Tensor, clip: float) -> bool:
    """Whether any of ``states`` (clamped to [-clip, clip]) sits on the clip: one read of a
    chunk instead of a mask per step (states reach the clip only where explicit Euler runs
    away, rarely in training)."""
    lo, hi = torch.aminmax(states)
    return bool(hi >= clip) or bool(lo <= -clip)
