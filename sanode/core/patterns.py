"""Planted attractors: the ±a target patterns, one per class."""

from __future__ import annotations

import torch


def block_patterns(
    n: int, k: int, a: float = 0.5, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The authors' block rule for K planted ±a patterns in R^N.

    Class ``c`` (0-based) is ``+a`` everywhere except one contiguous block
    ``[c*L, (c+1)*L)`` set to ``-a``, with ``L = n // (k + 2)``. For the 7x7
    letters (N = 49, K = 5) every target is one row of the grid.

    Returns:
        (K, N) tensor of ``±a``.
    """
    if k < 1:
        raise ValueError(f"k (number of classes) must be >= 1, got {k}")
    length = n // (k + 2)
    if length < 1:
        raise ValueError(
            f"block_patterns needs n >= k + 2 to give every class a non-empty block "
            f"(got n={n}, k={k}); use fewer classes or a larger state"
        )
    if a <= 0:
        raise ValueError(f"a (well position) must be > 0, got {a}")
    patterns = torch.full((k, n), a, dtype=dtype)
    for c in range(k):
        patterns[c, c * length : (c + 1) * length] = -a
    return patterns


def check_patterns(patterns: torch.Tensor, a: float) -> None:
    """Raise ``ValueError`` unless ``patterns`` is a (K, N) matrix of ±a with independent rows."""
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be a (K, N) matrix, got shape {tuple(patterns.shape)}")
    k, n = patterns.shape
    if k >= n:
        raise ValueError(f"need fewer patterns than nodes (K < N), got K={k}, N={n}")
    if not torch.all(torch.isclose(patterns.abs().double(), torch.tensor(float(a)).double())):
        raise ValueError(
            f"every planted pattern entry must be ±a = ±{a}; got values in "
            f"[{patterns.min().item():g}, {patterns.max().item():g}]. Build them with "
            "sanode.block_patterns(n, k, a) or pass the same `a` as the patterns use"
        )
    rank = torch.linalg.matrix_rank(patterns.double()).item()
    if rank < k:
        raise ValueError(
            f"the {k} planted patterns are linearly dependent (rank {rank}); every class "
            "needs its own direction in the kernel of A"
        )
