import pytest
import torch

from sanode.config import TrainConfig
from sanode.core.converge import integrate_until_converged
from sanode.core.integrate import integrate, num_steps
from sanode.core.noise import add_pixel_noise
from sanode.core.products import Products
from sanode.data.datasets import load_split
from sanode.training.evaluate import evaluate
from sanode.training.train import train


@pytest.fixture(scope="module")
def letters_model():
    cfg = TrainConfig(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, epochs=15)
    split = load_split(cfg, "train")
    return train(cfg, split.x, split.y, split.patterns, progress=False).model, split


def test_early_exit_gives_the_fixed_horizon_buckets_with_less_work(letters_model):
    model, split = letters_model
    x = add_pixel_noise(split.x, 0.3, torch.Generator().manual_seed(0))
    fixed = evaluate(model, x, split.y, t_end=40.0, dt=0.1)
    early = evaluate(model, x, split.y, t_end=40.0, dt=0.1, tol=1e-4)
    assert early.buckets == fixed.buckets
    assert torch.equal(torch.sign(early.states), torch.sign(fixed.states))
    assert (early.states - fixed.states).abs().max() < 1e-3
    _, steps = integrate_until_converged(model.dynamics(), x, 40.0, 0.1, tol=1e-4)
    assert steps.sum() < 0.5 * len(x) * num_steps(40.0, 0.1)
    assert torch.equal(early.steps, steps)  # evaluate reports the same work
    assert early.work_fraction == pytest.approx(float(steps.sum()) / (len(x) * 400))
    assert fixed.work_fraction == 1.0 and torch.equal(fixed.steps, torch.full((len(x),), 400))


def test_items_that_never_converge_run_to_the_horizon(letters_model):
    model, _ = letters_model
    dyn = model.dynamics()
    x0 = torch.rand(4, 49, generator=torch.Generator().manual_seed(1))
    final, steps = integrate_until_converged(dyn, x0, 0.5, 0.1, tol=1e-12)
    assert torch.equal(steps, torch.full((4,), 5))
    assert torch.allclose(final, integrate(dyn, x0, 0.5, 0.1))
    with pytest.raises(ValueError, match="tolerance"):
        integrate_until_converged(dyn, x0, 1.0, 0.1, tol=0.0)


def test_bfloat16_transient_with_a_float32_finish_lands_on_the_float32_fixed_points(
    letters_model,
):
    model, split = letters_model
    x = add_pixel_noise(split.x, 0.3, torch.Generator().manual_seed(2))
    exact = model.dynamics(products=Products("float32"))
    fast = model.dynamics(products=Products("bfloat16"))
    ref, ref_steps = integrate_until_converged(exact, x, 40.0, 0.1, tol=1e-4)
    # bfloat16 products alone: the rounding noise keeps the velocity above 1e-4
    _, bf_steps = integrate_until_converged(fast, x, 40.0, 0.1, tol=1e-4)
    assert (bf_steps == 400).float().mean() > 0.5
    mixed, steps = integrate_until_converged(fast, x, 40.0, 0.1, tol=1e-4, finish=exact)
    # every final state is a fixed point of the float32 field; an item whose bfloat16
    # transient chose another basin (A's rounding, docs/performance.md) may end elsewhere:
    # at most 2 of 100 here, the others on the float32 run's fixed point
    with torch.no_grad():
        assert float(exact.field(mixed).abs().amax(1).max()) < 1e-4
    moved = (torch.sign(mixed) != torch.sign(ref)).any(1)
    assert int(moved.sum()) <= 2
    assert (mixed - ref)[~moved].abs().max() < 1e-2
    assert bool((steps < 400).all()) and steps.sum() <= 1.5 * ref_steps.sum()
    # the finish is the exact dynamics: with dyn == finish it is the one-cohort run
    same, same_steps = integrate_until_converged(exact, x, 40.0, 0.1, tol=1e-4, finish=exact,
                                                 coarse_tol=1e-3)  # fmt: skip
    assert torch.allclose(same, ref, atol=1e-5) and same_steps.sum() <= ref_steps.sum() + len(x)
    assert torch.equal(model.early_exit_dynamics(Products("bfloat16"))[1].linear_t, exact.linear_t)
    assert model.early_exit_dynamics(Products("float32"))[1] is None  # float32: no finish
    # evaluate() finishes bfloat16 evaluations this way: early exit works with bfloat16 products
    res = evaluate(model, x, split.y, t_end=40.0, dt=0.1, tol=1e-4, products=Products("bfloat16"))
    assert torch.equal(res.states, mixed) and torch.equal(res.steps, steps)
    assert res.work_fraction < 0.5
    with pytest.raises(ValueError, match="exceed"):
        integrate_until_converged(fast, x, 1.0, 0.1, tol=1e-3, finish=exact, coarse_tol=1e-4)
