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

from .gemm import Weight, addmm_, matmul


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


class _Backward:
    """The backward pass through spans of steps, its buffers allocated once.

    Accumulates into ``grad_w`` and ``grads_pq`` (dL/dp, dL/dq) in place. ``chunk`` steps'
    gradients are kept for one weight-gradient GEMM; with bfloat16 products they are also kept
    in bfloat16 (the cast that feeds each step's ``g @ W^T`` product), so that GEMM casts only
    the states.
    """

    def __init__(
        self, states, g, w, pf, qf, clip, chunk, grad_w, grads_pq, fused=False, route="auto"
    ) -> None:
        self.w, self.qf, self.clip = w, qf, clip
        self.p = torch.tensor(pf, dtype=g.dtype, device=g.device)
        self.q3 = torch.tensor(3.0 * qf, dtype=g.dtype, device=g.device)
        self.grad_w, self.grads_pq = grad_w, grads_pq
        # W^T laid out once: a product with the transposed view is slower on oneDNN's kernels
        self.product = _Product(w.t().contiguous(), g, route)
        self.route = route
        self.buf = states.new_empty((chunk, *g.shape))
        self.buf_lo = torch.empty_like(self.buf, dtype=w.dtype) if self.product.mixed else None
        self.tmp = torch.empty_like(g)
        self.spare = [torch.empty_like(g), torch.empty_like(g)]
        # each step's dL/dp, dL/dq terms, sum(gy x) and sum(gy x^3), while x and gy are in cache
        self.sq, self.gx = torch.empty_like(g), torch.empty_like(g)
        self.pq_rows = g.new_empty((chunk, 2))
        # fused (mixed products only): one compiled kernel a step between the products
        self.fused = fused and self.product.mixed
        if self.fused:
            from .fused import kernel

            self.kernel = kernel("backward")
            self.spare_lo = torch.empty_like(g, dtype=w.dtype)

    def span(
        self, states: torch.Tensor, g: torch.Tensor, lows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate g = dL/dx_n through the steps between ``states[0]`` and ``states[-1]``;
        returns dL/dx_0 (products in w's dtype, bfloat16 operands cast from float32).
        ``lows`` (mixed products only): the states' casts to w's dtype, as the forward pass
        (or the span's recomputation) cast them for its products."""
        n_steps = states.shape[0] - 1
        b, n = g.shape
        chunk = self.buf.shape[0]
        clip = self.clip
        k = n_steps - 1
        while k >= 0:
            lo = max(0, k - chunk + 1)
            rows = k - lo + 1
            if clip is not None and _on_clip(states[lo + 1 : lo + rows + 1], clip):
                g = self._steps_masked(states, g, lo, rows)
            else:
                g = self._steps_free(states, g, lo, rows)
            xs = states[lo : lo + rows].reshape(rows * b, n)
            gs = self.buf[:rows].reshape(rows * b, n)
            if self.buf_lo is None:
                addmm_(self.grad_w, xs.t(), gs, route=self.route)
            else:  # a bfloat16 product into the float32 gradient (gemm.matmul: torch.mm)
                gs_lo = self.buf_lo[:rows].reshape(rows * b, n)
                assert lows is not None  # the forward pass's casts of these states
                xs_lo = lows[lo : lo + rows].reshape(rows * b, n)
                self.grad_w.add_(matmul(xs_lo.t(), gs_lo, self.route))
            # the steps' sums (loop dtype) accumulated in float64
            self.grads_pq.add_(self.pq_rows[:rows].sum(0, dtype=torch.float64))
            k = lo - 1
        return g.clone() if any(g is t for t in self.spare) else g

    def _spare(self, g: torch.Tensor) -> torch.Tensor:
        return self.spare[0] if g is not self.spare[0] else self.spare[1]

    def _steps_masked(self, states, g, lo: int, rows: int) -> torch.Tensor:
        """Steps ``lo + rows - 1`` down to ``lo`` where some state after them is on the clip:
        ``buf[j]`` = dL/dy of step lo + j (dL/dx_{k+1} times the clamp's derivative)."""
        clip, tmp = self.clip, self.tmp
        for j in range(rows - 1, -1, -1):
            kk = lo + j
            x, gy = states[kk], self.buf[j]
            # the clamp's derivative 1[|x_{k+1}| < clip] as -sign(|x_{k+1}| - clip): the
            # stored states are clamped, so it is 1 or 0; float ops only (a bool mask costs
            # twice as much)
            torch.abs(states[kk + 1], out=tmp)
            tmp.sub_(clip).sign_()
            torch.mul(g, tmp, out=gy).neg_()
            g = self._through(x, j, self._spare(g))
        return g

    def _steps_free(self, states, g, lo: int, rows: int) -> torch.Tensor:
        """:meth:`_steps_masked` where no state after the steps is on the clip (or there is no
        clip): the clamp's derivative is 1, so dL/dy_k = dL/dx_{k+1} and each step's product
        writes straight into the row of the step before; no mask and no copy, the same bits."""
        self.buf[rows - 1].copy_(g)
        if self.fused:
            return self._steps_fused(states, g, lo, rows)
        for j in range(rows - 1, -1, -1):
            g = self._through(states[lo + j], j, self.buf[j - 1] if j > 0 else self._spare(g))
        return g

    def _steps_fused(self, states, g, lo: int, rows: int) -> torch.Tensor:
        """:meth:`_steps_free` with one product and one compiled kernel a step (which also
        writes the next row's bfloat16 cast and the step's dL/dp, dL/dq terms); ``buf[rows-1]``
        holds g already."""
        assert self.buf_lo is not None
        self.buf_lo[rows - 1].copy_(g)
        last = self._spare(g)
        result = self.product.result
        for j in range(rows - 1, -1, -1):
            r = self.product.weight(self.buf_lo[j], out=result)
            out, out_lo = (self.buf[j - 1], self.buf_lo[j - 1]) if j > 0 else (last, self.spare_lo)
            self.kernel(
                states[lo + j], self.buf[j], r, out, out_lo, self.pq_rows[j], self.p, self.q3
            )
        return last

    def _through(self, x: torch.Tensor, j: int, out: torch.Tensor) -> torch.Tensor:
        """dL/dx_k = gy * (p - 3 q x_k^2) + gy @ W^T into ``out`` (the step's derivative,
        y_k = x_k (p - q x_k^2) + x_k @ W), from gy = dL/dy_k in ``buf[j]``; returns ``out``.
        Also ``pq_rows[j]`` = (dL/dp, dL/dq) of the step: (sum(gy x_k), -sum(gy x_k^3))."""
        gy, tmp, sq, gx = self.buf[j], self.tmp, self.sq, self.gx
        torch.mul(x, x, out=sq)
        torch.mul(gy, x, out=gx)
        torch.sum(gx, dim=(0, 1), out=self.pq_rows[j, 0])
        torch.dot(gx.view(-1), sq.view(-1), out=self.pq_rows[j, 1]).neg_()
        torch.addcmul(self.p, x, x, value=-3.0 * self.qf, out=tmp)
        self.product.add(tmp, gy, gy, out, None if self.buf_lo is None else self.buf_lo[j])
        return out


def _on_clip(states: torch.Tensor, clip: float) -> bool:
    """Whether any of ``states`` (clamped to [-clip, clip]) sits on the clip: one read of a
    chunk instead of a mask per step (states reach the clip only where explicit Euler runs
    away, rarely in training)."""
    lo, hi = torch.aminmax(states)
    return bool(hi >= clip) or bool(lo <= -clip)


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
