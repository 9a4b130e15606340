import math

import pytest
import torch

from sanode.core.integrate import SOLVERS, Dynamics, integrate, num_steps


def _logistic(c1=0.8, c2=2.0):
    """dx/dt = c1 x - c2 x^3 (no coupling): closed-form solution."""
    dyn = Dynamics(
        torch.zeros(3, 3, dtype=torch.float64),
        torch.tensor(c1, dtype=torch.float64),
        torch.tensor(c2, dtype=torch.float64),
    )

    def exact(x0, t):
        e = math.exp(c1 * t)
        return x0 * e / torch.sqrt(1 + (c2 / c1) * x0**2 * (e * e - 1))

    return dyn, exact


def _linear():
    """dx/dt = x M (row convention): exact solution x0 expm(t M)."""
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=gen, dtype=torch.float64) * 0.5
    dyn = Dynamics(
        m, torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    )
    return dyn, lambda x0, t: x0 @ torch.linalg.matrix_exp(t * m)


@pytest.mark.parametrize("problem", [_logistic, _linear])
@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_order_of_convergence(problem, method):
    dyn, exact = problem()
    x0 = torch.tensor([[0.3, -0.7, 1.2, 0.1][: dyn.linear_t.shape[0]]], dtype=torch.float64)
    t_end = 2.0
    errors = []
    for dt in (0.04, 0.02, 0.01):
        x = integrate(dyn, x0, t_end, dt, method=method)
        errors.append((x - exact(x0, t_end)).abs().max().item())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    expected = SOLVERS[method].order
    for order in orders:
        assert abs(order - expected) < 0.2, (method, errors, orders)


def test_reverse_recovers_initial_state():
    dyn, _ = _linear()
    x0 = torch.tensor([[0.2, -0.4, 0.9, 0.5]], dtype=torch.float64)
    forward = integrate(dyn, x0, 0.5, 0.01, method="rk4")
    back = integrate(dyn, forward, 0.5, 0.01, method="rk4", reverse=True)
    assert torch.allclose(back, x0, atol=1e-9)


def test_record_every_samples_trajectory():
    dyn, exact = _logistic()
    x0 = torch.tensor([[0.3, -0.7, 1.2]], dtype=torch.float64)
    times, states = integrate(dyn, x0, 1.0, 0.1, method="rk4", record_every=3)
    assert torch.allclose(times, torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0], dtype=torch.float64))
    assert states.shape == (5, 1, 3)
    assert torch.equal(states[0], x0)
    assert torch.allclose(states[-1], exact(x0, 1.0), atol=1e-6)


def test_clip_bounds_state():
    dyn = Dynamics(torch.zeros(2, 2), torch.tensor(5.0), torch.tensor(0.0), clip=3.0)
    x = integrate(dyn, torch.tensor([[1.0, -1.0]]), 5.0, 0.1)
    assert torch.equal(x, torch.tensor([[3.0, -3.0]]))


def test_step_count_is_robust_to_rounding():
    assert num_steps(5.5, 0.1) == 55
    assert num_steps(60.0, 0.1) == 600
    assert num_steps(120.1, 0.1) == 1201
    with pytest.raises(ValueError, match="positive"):
        num_steps(1.0, 0.0)


def test_unknown_method_lists_choices():
    dyn, _ = _logistic()
    with pytest.raises(ValueError, match="euler"):
        integrate(dyn, torch.zeros(1, 3, dtype=torch.float64), 1.0, 0.1, method="heun")
