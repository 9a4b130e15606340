"""Each Euler step's elementwise work as one compiled kernel (bfloat16 products, float32 loop).

With bfloat16 products the eager forward step is five elementwise passes around its product
(cubic term, operand cast, copy of the product, sum, clamp) and the backward step six: each a
dispatch and an OpenMP region over a (B, N) state. Where the product itself takes 0.16 ms (an
Intel Xeon with AMX) those passes cost as much as the product. Here Inductor
(``torch.compile``) fuses everything between two products into one kernel:

    forward   x_{k+1} = clamp(x_k (p - q x_k^2) + r_k),  and x_{k+1}'s bfloat16 cast
              (r_k = bf16(x_k) @ W, the next step's operand)
    backward  g_k = gy_k (p - 3 q x_k^2) + r_k,  g_k's bfloat16 cast,
              (sum(gy_k x_k), -sum(gy_k x_k^3))            (r_k = bf16(gy_k) @ W^T)

The products stay oneDNN's (outside the compiled regions). The kernels write into the
caller's buffers (rows of the stored states and gradients: no allocation per step); p and q
are 0-dim tensors (trainable gamma changes them every step: no recompilation), the clip is a
constant. Results differ from the eager passes by float32 rounding only (the compiler may
contract a multiply and an add).

Compiling takes 10-30 s per kernel and batch shape on a CPU (seconds from Inductor's cache in
the same user's later runs); it needs a C++ compiler there (Triton on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def forward_step(
    x: torch.Tensor,
    r: torch.Tensor,
    out: torch.Tensor,
    out_lo: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    clip: float | None,
) -> None:
    """out = clamp(x * (p - q x^2) + r, -clip, clip) and out_lo = out in bfloat16.

    Shapes: x, out (B, N) float32; r, out_lo (B, N) bfloat16 (r = bf16(x) @ W); p, q 0-dim.
    """
    y = x * (p - q * x * x) + r.to(x.dtype)
    if clip is not None:
        y = y.clamp(-clip, clip)
    out.copy_(y)
    out_lo.copy_(y)


def backward_step(
    x: torch.Tensor,
    gy: torch.Tensor,
    r: torch.Tensor,
    out: torch.Tensor,
    out_lo: torch.Tensor,
    sums: torch.Tensor,
    p: torch.Tensor,
    q3: torch.Tensor,
) -> None:
    """out = gy * (p - q3 x^2) + r (dL/dx_k from gy = dL/dy_k, r = bf16(gy) @ W^T), out_lo =
    out in bfloat16, sums = (sum(gy x), -sum(gy x^3)) (the step's dL/dp, dL/dq).

    Shapes: x, gy, out (B, N) float32; r, out_lo (B, N) bfloat16; sums (2,); p, q3 0-dim.
    """
    gx = gy * x
    sums.copy_(torch.stack((gx.sum(), -(gx * x * x).sum())))
    y = gy * (p - q3 * x * x) + r.to(gy.dtype)
    out.copy_(y)
    out_lo.copy_(y)


_STEPS: dict[str, Callable[..., None]] = {"forward": forward_step, "backward": backward_step}
_KERNELS: dict[str, Callable[..., None]] = {}


def kernel(name: str) -> Callable[..., None]:
    """The compiled ``forward_step`` or ``backward_step`` (compiled once per process, on its
    first call per shape)."""
    if name not in _KERNELS:
        compiled = torch.compile(_STEPS[name], dynamic=False, fullgraph=True)
        _KERNELS[name] = _explained(compiled, name)
    return _KERNELS[name]


def _explained(compiled: Callable[..., Any], name: str) -> Callable[..., None]:
    """``compiled``, whose compile failure (no C++ compiler, an unsupported device) says how to
    run without it."""

    def call(*args: Any) -> None:
        try:
            compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as err:  # type: ignore[attr-defined]
            raise RuntimeError(
                f"fuse_steps: torch.compile could not build the fused {name} step ({err}); "
                "install a C++ compiler (CPU) or Triton (CUDA), or set fuse_steps: false"
            ) from err

    return call
