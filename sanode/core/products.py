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

:func:`problem` is the one rule (what fits which loop dtype, what training may use); the
config (names) and the model (:class:`Products`) both ask it. Light: torch is imported only
for :attr:`Products.dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TWO_PARTS = "bfloat16x2"
NAMES = ("float32", "float64", "bfloat16", TWO_PARTS)
TRAINING_NAMES = ("float32", "float64", "bfloat16")  # the training loop runs one product


def problem(name: str, loop: str, *, training: bool) -> str | None:
    """Why products ``name`` cannot run in a ``loop`` (``"float32"``/``"float64"``) loop, for
    training or evaluation; None when they can."""
    if name not in NAMES:
        return f"must be one of {list(TRAINING_NAMES if training else NAMES)}, got {name!r}"
    if training and name == TWO_PARTS:
        return (
            f"{TWO_PARTS!r} is an evaluation mode: the training loop runs one bfloat16 product "
            f"(matmul_dtype: bfloat16); set eval_matmul_dtype: {TWO_PARTS} for evaluation"
        )
    fits = loop == "float32" if name in ("bfloat16", TWO_PARTS) else name == loop
    if not fits:
        return (
            f"{name!r} does not fit dtype {loop!r}: use null (the loop dtype) or bfloat16 "
            "products with a float32 loop"
        )
    return None


@dataclass(frozen=True)
class Products:
    """A loop's products (``name``: one of :data:`NAMES`); build with :meth:`parse`."""

    name: str

    @classmethod
    def parse(cls, name: str | None, loop: str, *, training: bool = False) -> Products:
        """``name`` (None: the loop dtype) checked against the ``loop`` dtype; a misfit raises
        ``ValueError`` saying what fits."""
        chosen = loop if name is None else name
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
