"""The torch side of the settings: a dtype name as a torch dtype, a block under a float32
matmul precision, the device a setting names. Kept out of :mod:`sanode.config`, which the
workflow imports in Snakemake's own process without torch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .core import products
from .typecheck import ConfigError

# torch.set_float32_matmul_precision: full float32, TF32 (or bf16x3 on CPU), bfloat16
MATMUL_PRECISIONS = ("highest", "high", "medium")

if TYPE_CHECKING:
    import torch


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"`` -> ``torch.float32`` (and float64, bfloat16)."""
    import torch

    _one_of("dtype", name, (*products.TRAINING_NAMES, products.AUTO))
    return getattr(torch, name)


@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Run a block under ``torch.set_float32_matmul_precision(name)``, restored afterwards.

    ``"high"`` lets float32 matrix products use TF32 tensor cores on CUDA (and bf16x3 on
    CPUs that have it), ``"medium"`` bfloat16; float64 products are never affected.
    """
    import torch

    _one_of("matmul_precision", name, MATMUL_PRECISIONS)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(name)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA device is available; use 'auto'")
    return device
