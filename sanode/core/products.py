"""The matrix products of an integration loop as one value: their dtype, and whether A is
split into two bfloat16 parts.

Every Euler (or RK4) step of the SA-nODE loop multiplies the (B, N) state by the (N, N)
coupling; that product is the step's cost. Four modes:

========== =================================================================================
float32    float32 products (a float32 loop)
float64    float64 products (a float64 loop)
bfloat16   one bfloat16 product per step, with a float32 loop (state, cubic term and sums
           stay float32; A is cast once per pass)
bfloat16x2 two bfloat16 products per step, ``x A_hi + x A_lo`` with ``A_lo`` the rounding
           residual of ``A_hi``: A's own rounding is gone (evaluation only; a float32 loop)
========== =================================================================================

The settings also take ``auto``: bfloat16 where the device multiplies bfloat16 in hardware
(:func:`native_bfloat16`), the loop dtype elsewhere. Where it does not, torch falls back to
a scalar bfloat16 GEMM: on an AVX2-only AMD EPYC (no AVX512) a (200, 784) @ (784, 784)
bfloat16 product took 105 ms against 1.5 ms in float32, so a bfloat16 recipe there would
run its products about 70x slower instead of about 4x faster.

:func:`problem` is the one rule (what fits which loop dtype, what training may use); the
config (names) and the model (:class:`Products`) both ask it. Light: torch is imported only
for :attr:`Products.dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TWO_PARTS = "bfloat16x2"
AUTO = "auto"  # bfloat16 where the device has native bfloat16 products, else the loop dtype
NAMES = ("float32", "float64", "bfloat16", TWO_PARTS)
TRAINING_NAMES = ("float32", "float64", "bfloat16")  # the training loop runs one product


def native_bfloat16(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` (None: the CPU) multiplies bfloat16 matrices in hardware: a CUDA
    device with bfloat16 support, or a CPU whose oneDNN has bfloat16 kernels (AVX512 /
    AVX512-BF16 / AMX). Elsewhere torch's bfloat16 matmul is a slow scalar fallback."""
    import torch

    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve(name: str | None, loop: str, device: torch.device | str | None = None) -> str:
    """The products a setting ``name`` means on ``device``: None is the loop dtype, ``auto``
    is bfloat16 with a float32 loop on a device with :func:`native_bfloat16`, else the loop
    dtype; any other name is itself."""
    if name is None:
        return loop
    if name == AUTO:
        return "bfloat16" if loop == "float32" and native_bfloat16(device) else loop
    return name


def problem(name: str, loop: str, *, training: bool) -> str | None:
    """Why products ``name`` cannot run in a ``loop`` (``"float32"``/``"float64"``) loop, for
    training or evaluation; None when they can."""
    if name == AUTO:
        return None  # resolves to a mode that fits (resolve)
    if name not in NAMES:
        allowed = [*(TRAINING_NAMES if training else NAMES), AUTO]
        return f"must be one of {allowed}, got {name!r}"
    if training and name == TWO_PARTS:
        return (
            f"{TWO_PARTS!r} is an evaluation mode: the training loop runs one bfloat16 product "
            f"(train_products: bfloat16); set eval_products: {TWO_PARTS} for evaluation"
        )
    fits = loop == "float32" if name in ("bfloat16", TWO_PARTS) else name == loop
    if not fits:
        return (
            f"{name!r} does not fit dtype {loop!r}: use null (the loop dtype) or bfloat16 "
            "products with a float32 loop"
        )
    return None


ROUTES = ("auto", "torch", "onednn")


@dataclass(frozen=True)
class Products:
    """A loop's products (``name``: one of :data:`NAMES`) and their route (``"torch"``,
    ``"onednn"``, or ``"auto"``: :func:`sanode.core.gemm.gemm_route`'s rule, for a value built
    without measuring; :mod:`sanode.core.precision` measures it); build with :meth:`parse`."""

    name: str
    # how they run, not what they are: two values of one name are equal whatever their routes
    route: str = field(default="auto", compare=False)

    @classmethod
    def parse(
        cls,
        name: str | Products | None,
        loop: str,
        *,
        training: bool = False,
        device: torch.device | str | None = None,
    ) -> Products:
        """``name`` (None: the loop dtype; ``auto``: :func:`resolve` on ``device``; a
        :class:`Products` keeps its route) checked against the ``loop`` dtype; a misfit
        raises ``ValueError`` saying what fits."""
        if isinstance(name, Products):
            why = problem(name.name, loop, training=training)
            if why is not None:
                raise ValueError(f"products {why}")
            return name
        chosen = resolve(None if name is None else str(name), loop, device)
        why = problem(chosen, loop, training=training)
        if why is not None:
            raise ValueError(f"products {why}")
        return cls(chosen)

    @property
    def two_parts(self) -> bool:
        """A split into a high and a low bfloat16 part (two products per step)."""
        return self.name == TWO_PARTS

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype the products run in (bfloat16 for both bfloat16 modes)."""
        import torch

        return torch.bfloat16 if self.two_parts else getattr(torch, self.name)

    def __str__(self) -> str:
        return self.name


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")
