"""The synthetic 7x7 gray-scale letters A-E of the paper's Fig. 2."""

from __future__ import annotations

import torch

from ..core.noise import add_pixel_noise

LETTER_NAMES = ("A", "B", "C", "D", "E")

# '#' a full stroke (1.0), '+' a lighter anti-aliased edge (0.5), '.' background (0.0).
_GLYPHS = {
    "A": ("..###..", ".#...#.", "#.....#", "#######", "#.....#", "#.....#", "#.....#"),
    "B": ("######.", "#.....#", "#.....#", "######.", "#.....#", "#.....#", "######."),
    "C": (".#####+", "#......", "#......", "#......", "#......", "#......", ".#####+"),
    "D": ("#####+.", "#....+#", "#.....#", "#.....#", "#.....#", "#....+#", "#####+."),
    "E": ("#######", "#......", "#......", "#####+.", "#......", "#......", "#######"),
}
_LEVEL = {"#": 1.0, "+": 0.5, ".": 0.0}


def letter_images(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(5, 49) clean letters A-E, pixels in [0, 1], flattened row-major."""
    rows = [[_LEVEL[c] for line in _GLYPHS[name] for c in line] for name in LETTER_NAMES]
    return torch.tensor(rows, dtype=dtype)


def letters_dataset(
    copies: int,
    eps: float = 0.0,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``copies`` images per letter, each with its own pixel noise at level ``eps``.

    Returns:
        x (5*copies, 49) images and y (5*copies,) labels 0..4, letter-major order.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    clean = letter_images(dtype)
    y = torch.arange(len(LETTER_NAMES)).repeat_interleave(copies)
    x = clean[y]
    gen = torch.Generator().manual_seed(int(seed))
    return add_pixel_noise(x, eps, gen), y
