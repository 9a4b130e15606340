import pytest
import torch

from sanode.core.noise import add_pixel_noise, noisy_pixel_count
from sanode.data.letters import LETTER_NAMES, letter_images, letters_dataset


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_exactly_round_eps_n_pixels_change(eps):
    x = torch.full((64, 49), -1.0)  # sentinel outside [0, 1]: every replaced pixel is visible
    out = add_pixel_noise(x, eps, torch.Generator().manual_seed(0))
    changed = (out != -1.0).sum(dim=1)
    assert torch.all(changed == round(eps * 49))
    new = out[out != -1.0]
    assert torch.all((new >= 0) & (new <= 1))
    assert torch.equal(x, torch.full((64, 49), -1.0))  # input untouched


def test_noise_is_reproducible_and_varies_per_image():
    x = torch.zeros(32, 784)
    a = add_pixel_noise(x, 0.2, torch.Generator().manual_seed(5))
    b = add_pixel_noise(x, 0.2, torch.Generator().manual_seed(5))
    c = add_pixel_noise(x, 0.2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    masks = a != 0
    assert len({tuple(m.nonzero().flatten().tolist()) for m in masks}) == 32


def test_noise_rejects_bad_levels():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_pixel_noise(torch.zeros(2, 4), 1.5, torch.Generator())
    assert noisy_pixel_count(0.3, 49) == 15


def test_letters_are_distinct_gray_images():
    x = letter_images()
    assert x.shape == (5, 49)
    assert x.min() >= 0 and x.max() <= 1
    assert len({tuple(r.tolist()) for r in x}) == 5
    assert LETTER_NAMES == ("A", "B", "C", "D", "E")


def test_noisy_letters_dataset_is_seeded():
    x1, y1 = letters_dataset(10, 0.2, seed=1)
    x2, _ = letters_dataset(10, 0.2, seed=1)
    assert x1.shape == (50, 49)
    assert torch.equal(y1, torch.arange(5).repeat_interleave(10))
    assert torch.equal(x1, x2)
    clean = letter_images()[y1]
    assert torch.all((x1 != clean).sum(dim=1) <= 10)  # at most round(0.2*49) pixels differ
