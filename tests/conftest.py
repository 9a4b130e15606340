import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def small_patterns():
    from sanode import block_patterns

    return block_patterns(20, 3, 0.5)
