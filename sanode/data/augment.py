"""Training-set augmentation: every training image moved by its own random pixel shift.

A translation by a pixel or two keeps a digit's class, so the flow is asked to carry the
shifted image to the same attractor: more distinct inputs per epoch, a regulariser against the
fit to the 54,000 training images (the network, its N nodes and K attractors are unchanged;
the paper trains without it). The draws come from a generator of their own
(:func:`sanode.core.noise.augment_generator`), so the epoch's shuffle and training noise are the
same with and without the shift, and a resumed run draws the same shifts.
"""

from __future__ import annotations

import math

import torch


def image_side(n_pixels: int) -> int:
    """The side of a square image of ``n_pixels`` pixels; a ValueError if it is not square."""
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise ValueError(
            f"random shifts need square images; {n_pixels} pixels is not a square (set "
            "augment_shift: 0 for this data set)"
        )
    return side


def shift_images(
    x: torch.Tensor, max_shift: int, generator: torch.Generator, *, fill: float = 0.0
) -> torch.Tensor:
    """Translate every image by its own offset (dy, dx), each uniform in {-s, ..., s}.

    Pixels moved out of the frame are dropped and the uncovered border takes ``fill`` (the
    background, 0 for pixels in [0, 1]). One offset pair is drawn per image, on the CPU from
    ``generator``, whatever x's device.

    Args:
        x: (B, N) flattened square images (N = side^2).
        max_shift: s >= 0, the largest shift along each axis in pixels (0: x unchanged);
            less than the side.

    Returns:
        A new (B, N) tensor of x's dtype and device; x is not modified.
    """
    if x.ndim != 2:
        raise ValueError(f"shift_images expects flattened images (B, N), got {tuple(x.shape)}")
    side = image_side(x.shape[1])
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    if max_shift >= side:
        raise ValueError(f"max_shift {max_shift} must be below the image side {side}")
    if max_shift == 0 or len(x) == 0:
        return x.clone()
    s = max_shift
    offsets = torch.randint(-s, s + 1, (len(x), 2), generator=generator)
    padded = torch.nn.functional.pad(x.reshape(-1, side, side), (s, s, s, s), value=fill)
    out = torch.empty_like(x).reshape(-1, side, side)
    # one crop per distinct offset: (2s + 1)^2 slices of the padded batch
    code = ((offsets[:, 0] + s) * (2 * s + 1) + offsets[:, 1] + s).to(x.device)
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            rows = torch.nonzero(code == (dy + s) * (2 * s + 1) + dx + s).squeeze(1)
            if len(rows):
                # image moved by (dy, dx): output pixel (i, j) reads input (i - dy, j - dx)
                top, left = s - dy, s - dx
                out[rows] = padded[rows, top : top + side, left : left + side]
    return out.reshape(x.shape)
