"""Memory-lean, GEMM-bound forward and backward pass of the explicit Euler loop.

One Euler step of the SA-nODE dynamics, in row convention, is

    y_k     = x_k * (p - q * x_k**2) + x_k @ W          W = dt * (beta A)^T
    x_{k+1} = clamp(y_k, -clip, clip)                   p = 1 + dt * c1, q = dt * c2

Plain autograd keeps several (B, N) tensors per step and launches one small weight-gradient
GEMM per step. :class:`EulerLoop` keeps exactly one state per step (the x_k), recomputes
the cheap elementwise terms in the backward pass, and accumulates dL/dW over ``chunk``
steps at a time in one large GEMM ``X_c^T @ G_c`` of shape (N, chunk*B) @ (chunk*B, N).
Memory: (n+1)*B*N states plus chunk*B*N gradient rows; three GEMMs per step.

With ``segment=S`` (gradient checkpointing) the forward pass keeps only every S-th state;
the backward pass recomputes the S states of one segment at a time from its first state.
Memory: (n/S + S + chunk)*B*N, smallest near S = sqrt(n); cost: a fourth GEMM per step.
The states, x_n and dL/dx_0 are bit-identical to the unsegmented loop; dL/dW, dL/dp and dL/dq
differ by rounding only (the weight-gradient sums are split at other step boundaries).

With ``mm_dtype=torch.bfloat16`` (a float32 loop) the three products of every step run in
bfloat16: W is cast once per pass, each (B, N) operand is cast as it enters its product, and the
product is added to the float32 state. States, the cubic term, dL/dW's accumulation and every
returned gradient stay float32. The forward pass keeps each state's bfloat16 cast (another
n*B*N/2 floats' worth of memory) for the dL/dW products; with ``segment`` the recomputed
spans keep theirs.

With ``fused=True`` (bfloat16 products only) the elementwise passes between two products,
forward and backward, run as one compiled kernel each (:mod:`sanode.core.fused`); the masked
backward steps (a state on the clip, rare) stay eager.

dL/dp and dL/dq (sums over every step of gy * x and gy * x^3) are taken step by step while
the step's state and gradient are in cache, not over whole chunks afterwards (five more
passes over chunk*B*N floats in memory, about a tenth of a bfloat16 step).
"""

from __future__ import annotations

import math

import torch

from .euler_backward import _Backward
from .euler_steps import _Stepper


def resolve_segment(segment: int | str | None, n_steps: int) -> int | None:
    """``None``/0 -> no checkpointing; ``"auto"`` -> ceil(sqrt(n_steps)); else the int itself."""
    if segment is None or segment == 0:
        return None
    if segment == "auto":
        return max(1, math.ceil(math.sqrt(n_steps)))
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise ValueError(f"segment must be a positive step count, 'auto' or None, got {segment!r}")
    return segment


class EulerLoop(torch.autograd.Function):
    """``x_n = EulerLoop.apply(x0, W, p, q, n_steps, clip, chunk, segment, mm_dtype, fused,
    route)``.

    Shapes: x0 (B, N); W (N, N) in x0's dtype; p, q 0-dim tensors. Returns x_n of shape (B, N).
    ``segment``: None keeps every state; S keeps every S-th and recomputes the rest.
    ``mm_dtype``: dtype of the products (None: x0's dtype; or torch.bfloat16).
    ``fused``: with bfloat16 products, each step's elementwise work as one compiled kernel.
    ``route``: the products' route (:func:`sanode.core.gemm.gemm_route`).
    """

    @staticmethod
    def forward(
        ctx,
        x0,
        w,
        p,
        q,
        n_steps: int,
        clip,
        chunk: int,
        segment,
        mm_dtype=None,
        fused=False,
        route="auto",
    ):
        pf, qf = float(p), float(q)
        grad_dtype = w.dtype
        if mm_dtype is not None and mm_dtype != w.dtype:
            w = w.to(mm_dtype)
        stepper = _Stepper(w, x0, pf, qf, clip, fused, route)
        if segment is None or segment >= n_steps:
            states = x0.new_empty((n_steps + 1, *x0.shape))
            # mixed products: each state's cast is kept for the backward pass's dL/dW products
            lows = (
                x0.new_empty((n_steps, *x0.shape), dtype=w.dtype) if stepper.product.mixed else None
            )
            states[0].copy_(x0)
            stepper.run(states, lows)
            out = states[n_steps].clone()
            segment = None
        else:
            # states[j] = x_{j*S}; the last state is returned, not stored
            states = x0.new_empty((-(-n_steps // segment), *x0.shape))
            states[0].copy_(x0)
            x, nxt = x0.clone(), torch.empty_like(x0)
            lo, lo_next = stepper.lo
            stepper.begin(x, lo)
            for k in range(n_steps):
                stepper.step(x, nxt, lo, lo_next)
                x, nxt = nxt, x
                lo, lo_next = lo_next, lo
                if (k + 1) % segment == 0 and (k + 1) < n_steps:
                    states[(k + 1) // segment].copy_(x)
            out = x
            lows = None
        ctx.save_for_backward(states, w, lows)
        ctx.grad_dtype = grad_dtype
        ctx.pq = (pf, qf)
        ctx.clip = clip
        ctx.chunk = max(1, int(chunk))
        ctx.n_steps = n_steps
        ctx.segment = segment
        ctx.fused = stepper.fused
        ctx.route = route
        return out

    @staticmethod
    def backward(ctx, grad_out):
        states, w, lows = ctx.saved_tensors
        pf, qf = ctx.pq
        n_steps, segment = ctx.n_steps, ctx.segment
        g = grad_out.contiguous().clone()
        grad_w = torch.zeros_like(w, dtype=ctx.grad_dtype)
        grads_pq = torch.zeros(2, dtype=torch.float64, device=w.device)
        chunk = min(ctx.chunk, max(n_steps, 1), segment or n_steps or 1)
        back = _Backward(
            states, g, w, pf, qf, ctx.clip, chunk, grad_w, grads_pq, ctx.fused, ctx.route
        )
        if segment is None:
            g = back.span(states, g, lows)
        else:
            span = states.new_empty((segment + 1, *g.shape))
            stepper = _Stepper(w, g, pf, qf, ctx.clip, ctx.fused, ctx.route)
            span_lows = (
                g.new_empty((segment, *g.shape), dtype=w.dtype) if stepper.product.mixed else None
            )
            for j in range(states.shape[0] - 1, -1, -1):
                lo, hi = j * segment, min(n_steps, (j + 1) * segment)
                span[0].copy_(states[j])
                stepper.run(span[: hi - lo + 1], span_lows)
                g = back.span(span[: hi - lo + 1], g, span_lows)
        grads_pq = grads_pq.to(ctx.grad_dtype)
        return g, grad_w, grads_pq[0], grads_pq[1], None, None, None, None, None, None, None


def euler_loop(
    x0: torch.Tensor,
    w: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    n_steps: int,
    *,
    clip: float | None = None,
    chunk: int = 32,
    segment: int | str | None = None,
    mm_dtype: torch.dtype | None = None,
    fused: bool = False,
    route: str = "auto",
) -> torch.Tensor:
    """Run ``n_steps`` Euler steps with the lean backward pass; returns x_n (B, N).

    ``segment``: keep every state (None, default), or only every ``segment``-th one and
    recompute the rest in the backward pass (``"auto"`` = ceil(sqrt(n_steps))).
    ``mm_dtype``: run the products in this dtype (``torch.bfloat16``), W cast once here.
    ``fused`` (bfloat16 products of a float32 loop; ignored otherwise): each step's
    elementwise work in one compiled kernel (:mod:`sanode.core.fused`); float32 rounding apart,
    the same results.
    ``route``: the products' route, ``"torch"`` or ``"onednn"`` (:mod:`sanode.core.gemm`;
    ``"auto"``: its rule), as the run's precision chose it (:mod:`sanode.core.precision`).
    """
    segment = resolve_segment(segment, n_steps)
    return EulerLoop.apply(x0, w, p, q, n_steps, clip, chunk, segment, mm_dtype, fused, route)
