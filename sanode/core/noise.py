"""Pixel noise: a fixed number of randomly chosen pixels per image get a uniform new value.

Every random draw of noise in the package comes from a generator built here, so the same seed
gives the same noisy inputs in the pipeline, the CLI and the analyses.
"""

from __future__ import annotations

import torch


def noise_generator(seed: int, index: int) -> torch.Generator:
    """Generator of the test noise of draw ``seed`` at the ``index``-th level of a grid: every
    model (and ``sanode evaluate`` with the same ``--seed``) sees the same noisy inputs."""
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + index)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of everything random in one training epoch (shuffle, training noise)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def augment_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of the random shifts of one training epoch (``augment_shift``): its own,
    so the epoch's shuffle and noise are the same with and without the shifts."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch + 15_485_863)


def validation_generator(seed: int) -> torch.Generator:
    """Generator of the validation noise of a trial trained with ``seed``."""
    return torch.Generator().manual_seed(10_007 + seed)


def noisy_pixel_count(eps: float, n: int) -> int:
    """``round(eps * N)``: how many pixels of an N-pixel image the noise level eps replaces."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"the noise level eps must lie in [0, 1], got {eps}")
    return round(eps * n)


def add_pixel_noise(
    x: torch.Tensor,
    eps: float,
    generator: torch.Generator,
    *,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Replace exactly ``round(eps*N)`` distinct pixels of every image by values ~ U[low, high).

    Vectorised over the batch: the pixels of each row are the first ``k`` of a random
    permutation (argsort of uniform keys), drawn from ``generator`` (on x's device).

    Args:
        x: (B, N) images with pixels in [low, high].
        eps: noise level in [0, 1].

    Returns:
        A new (B, N) tensor; x is not modified.
    """
    if x.ndim != 2:
        raise ValueError(f"add_pixel_noise expects flattened images (B, N), got {tuple(x.shape)}")
    b, n = x.shape
    k = noisy_pixel_count(eps, n)
    out = x.clone()
    if k == 0 or b == 0:
        return out
    keys = torch.rand(b, n, generator=generator, device=x.device)
    idx = keys.argsort(dim=1)[:, :k]
    values = torch.rand(b, k, generator=generator, device=x.device, dtype=x.dtype)
    out.scatter_(1, idx, values * (high - low) + low)
    return out
