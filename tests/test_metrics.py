import pytest
import torch

from sanode import block_patterns
from sanode.core import metrics


@pytest.fixture
def patterns():
    return block_patterns(12, 2, 0.5)  # L = 3


def test_magnetization_and_overlap_on_attractor(patterns):
    y = torch.tensor([0, 1])
    assert torch.allclose(
        metrics.magnetization(patterns, patterns, y, 0.5), torch.ones(2, dtype=torch.float64)
    )
    assert torch.equal(
        metrics.sign_overlap(patterns, patterns, y), torch.ones(2, dtype=torch.float64)
    )
    swapped = metrics.sign_overlap(patterns, patterns, torch.tensor([1, 0]))
    assert torch.allclose(swapped, torch.zeros(2, dtype=torch.float64))  # 6 of 12 signs differ


def test_buckets_and_accuracy():
    overlap = torch.tensor([1.0, 1.0, 0.96, 0.95, 0.9, 0.1])
    b = metrics.buckets(overlap, 0.95)
    assert (b.exact, b.partial, b.wrong, b.total) == (2, 2, 2, 6)
    assert b.accuracy == pytest.approx(4 / 6)
    assert metrics.accuracy(overlap, 0.95) == pytest.approx(4 / 6)
    assert metrics.accuracy(overlap, 0.99) == pytest.approx(2 / 6)


def test_one_flipped_pixel_is_partial(patterns):
    x = patterns[:1].clone()
    x[0, 0] *= -1
    overlap = metrics.sign_overlap(x, patterns, torch.tensor([0]))
    assert overlap.item() == pytest.approx(10 / 12)
    assert metrics.buckets(overlap, 0.8).partial == 1


def test_mse_curve_and_nearest_attractor(patterns):
    y = torch.tensor([0, 1])
    states = torch.stack([torch.zeros(2, 12, dtype=torch.float64), patterns.clone()])
    curve = metrics.mse_curve(states, patterns, y)
    assert torch.allclose(curve, torch.tensor([12 * 0.25, 0.0], dtype=torch.float64))
    noisy = patterns + 0.2 * torch.randn(
        2, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert torch.equal(metrics.nearest_attractor(noisy, patterns), y)
    assert metrics.nearest_attractor_accuracy(noisy, patterns, torch.tensor([1, 1])) == 0.5
    assert torch.allclose(
        metrics.per_item_mse(patterns, patterns, y), torch.zeros(2, dtype=torch.float64)
    )
