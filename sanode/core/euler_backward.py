"""The backward pass of the lean Euler loop (:mod:`sanode.core.euler_grad`) through spans of
steps: each step's dL/dx from the recomputed elementwise terms, dL/dW in one GEMM per chunk of
steps, dL/dp and dL/dq step by step while the state is in cache."""

from __future__ import annotations

import torch

from .euler_steps import _on_clip, _Product
from .gemm import addmm_, matmul


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
