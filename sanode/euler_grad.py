"""Memory-lean, GEMM-bound forward and backward pass of the explicit Euler loop.

One Euler step of the SA-nODE dynamics, in row convention, is

    y_k     = x_k * (p - q * x_k**2) + x_k @ W          W = dt * (beta A)^T
    x_{k+1} = clamp(y_k, -clip, clip)                   p = 1 + dt * c1, q = dt * c2

Plain autograd keeps several (B, N) tensors per step and launches one small weight-gradient
GEMM per step. :class:`EulerLoop` keeps exactly one state per step (the x_k), recomputes
the cheap elementwise terms in the backward pass, and accumulates dL/dW over ``chunk``
steps at a time in one large GEMM ``X_c^T @ G_c`` of shape (N, chunk*B) @ (chunk*B, N).
Memory: (n+1)*B*N states plus chunk*B*N gradient rows.
"""

from __future__ import annotations

import torch


class EulerLoop(torch.autograd.Function):
    """``x_n = EulerLoop.apply(x0, W, p, q, n_steps, clip, chunk)``.

    Shapes: x0 (B, N); W (N, N); p, q 0-dim tensors. Returns x_n of shape (B, N).
    """

    @staticmethod
    def forward(ctx, x0, w, p, q, n_steps: int, clip: float | None, chunk: int):
        pf, qf = float(p), float(q)
        states = x0.new_empty((n_steps + 1, *x0.shape))
        states[0].copy_(x0)
        tmp = torch.empty_like(x0)
        for k in range(n_steps):
            x = states[k]
            torch.mul(x, x, out=tmp)
            tmp.mul_(-qf).add_(pf).mul_(x)
            torch.addmm(tmp, x, w, out=states[k + 1])
            if clip is not None:
                states[k + 1].clamp_(-clip, clip)
        ctx.save_for_backward(states, w)
        ctx.pq = (pf, qf)
        ctx.clip = clip
        ctx.chunk = max(1, int(chunk))
        return states[n_steps].clone()

    @staticmethod
    def backward(ctx, grad_out):
        states, w = ctx.saved_tensors
        pf, qf = ctx.pq
        clip, chunk = ctx.clip, ctx.chunk
        n_steps = states.shape[0] - 1
        b, n = states.shape[1], states.shape[2]
        wt = w.t()
        g = grad_out.contiguous().clone()
        grad_w = torch.zeros_like(w)
        grad_p = torch.zeros((), dtype=torch.float64, device=w.device)
        grad_q = torch.zeros((), dtype=torch.float64, device=w.device)
        buf = states.new_empty((min(chunk, max(n_steps, 1)), b, n))
        tmp = torch.empty_like(g)
        k = n_steps - 1
        while k >= 0:
            lo = max(0, k - chunk + 1)
            rows = k - lo + 1
            for j in range(rows - 1, -1, -1):
                kk = lo + j
                x = states[kk]
                gy = buf[j]
                if clip is not None:
                    torch.mul(g, states[kk + 1].abs() < clip, out=gy)
                else:
                    gy.copy_(g)
                torch.mul(x, x, out=tmp)
                tmp.mul_(-3.0 * qf).add_(pf).mul_(gy)
                g = torch.addmm(tmp, gy, wt)
            xs = states[lo : lo + rows].reshape(rows * b, n)
            gs = buf[:rows].reshape(rows * b, n)
            grad_w.addmm_(xs.t(), gs)
            prod = gs * xs
            grad_p += prod.sum(dtype=torch.float64)
            prod.mul_(xs).mul_(xs)
            grad_q -= prod.sum(dtype=torch.float64)
            k = lo - 1
        grad_p = grad_p.to(w.dtype)
        grad_q = grad_q.to(w.dtype)
        return g, grad_w, grad_p, grad_q, None, None, None


def euler_loop(
    x0: torch.Tensor,
    w: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    n_steps: int,
    *,
    clip: float | None = None,
    chunk: int = 32,
) -> torch.Tensor:
    """Run ``n_steps`` Euler steps with the lean backward pass; returns x_n (B, N)."""
    return EulerLoop.apply(x0, w, p, q, n_steps, clip, chunk)
