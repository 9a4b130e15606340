import pytest
import torch

from sanode import block_patterns
from sanode.core.patterns import check_patterns


def test_letters_targets_are_grid_rows():
    p = block_patterns(49, 5, 0.5)
    assert p.shape == (5, 49)
    grid = p.reshape(5, 7, 7)
    for k in range(5):
        assert torch.all(grid[k, k] == -0.5)  # row k is the -a block
        others = torch.cat([grid[k, :k], grid[k, k + 1 :]])
        assert torch.all(others == 0.5)


def test_block_length_and_signs():
    p = block_patterns(784, 10, 0.5)
    length = 784 // 12
    assert torch.all((p == -0.5).sum(dim=1) == length)
    assert torch.all(p.abs() == 0.5)
    assert torch.linalg.matrix_rank(p) == 10


def test_bad_sizes_are_explained():
    with pytest.raises(ValueError, match="n >= k \\+ 2"):
        block_patterns(4, 3)
    with pytest.raises(ValueError, match="±a"):
        check_patterns(torch.ones(2, 10), a=0.5)
    with pytest.raises(ValueError, match="linearly dependent"):
        check_patterns(torch.full((2, 10), 0.5), a=0.5)
