import pytest
import torch

from sanode import SANode, block_patterns
from sanode.core.products import Products


def _model(patterns, dtype=torch.float64, **kw):
    return SANode(patterns, dtype=dtype, seed=3, **kw)


def test_planted_patterns_are_fixed_points_in_kernel():
    p = block_patterns(49, 5, 0.5)
    model = _model(p)
    a_mat = model.coupling()
    assert (a_mat @ p.T).abs().max() < 1e-10 * a_mat.abs().max()
    assert model.vector_field(p).abs().max() < 1e-11


def test_coupling_has_the_planted_spectrum():
    p = block_patterns(20, 3, 0.5)
    model = _model(p)
    eig = torch.linalg.eigvals(model.coupling()).real.sort().values
    assert torch.allclose(eig, model.eigenvalues().detach().sort().values, atol=1e-8)


def test_eigenvalues_stay_below_bound_after_aggressive_training(small_patterns):
    model = _model(small_patterns, eig_mean=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=5.0)
    for _ in range(200):
        opt.zero_grad()
        # push eigenvalues up and |gamma| down: the bound must hold anyway
        loss = -model.eigenvalues().sum() + 10 * model.gamma.abs()
        loss.backward()
        opt.step()
        lam = model.eigenvalues().detach()
        assert torch.all(lam < model.stability_bound().detach())
    report = model.stability_report()
    assert report["max_real_jacobian_eig"] < 0


def test_analytic_jacobian_matches_autograd(small_patterns):
    model = _model(small_patterns)
    with torch.no_grad():
        model.gamma.fill_(-0.3)  # the dynamics use |gamma|
    for k in range(small_patterns.shape[0]):
        phi = small_patterns[k : k + 1].clone()
        jac = torch.autograd.functional.jacobian(lambda x: model.vector_field(x)[0], phi)[:, 0, :]
        analytic = model.beta * model.coupling() - 8 * 0.3 * 0.25 * torch.eye(
            20, dtype=torch.float64
        )
        assert torch.allclose(jac, analytic.detach(), atol=1e-10)
    report = model.stability_report(numeric=True)
    assert report["max_real_jacobian_eig_numeric"] == pytest.approx(
        report["max_real_jacobian_eig"], abs=1e-8
    )
    lam = model.eigenvalues().detach()
    rates = model.beta * lam - 8 * 0.3 * 0.25
    assert report["relaxation_time"] == pytest.approx(1 / rates.abs().min().item())


@pytest.mark.parametrize("clip", [None, 1.5])
def test_lean_euler_gradients_match_plain_autograd(small_patterns, clip):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 20, generator=gen, dtype=torch.float64) * 1.6 - 0.3
    target = small_patterns[torch.tensor([0, 1, 2, 0, 1, 2])]
    grads = []
    for lean in (True, False):
        model = _model(small_patterns, clip=clip, eig_mean=-1.0)
        x = x0.clone().requires_grad_(True)
        out = model(x, 3.0, 0.1) if lean else model.integrate(x, 3.0, 0.1)
        loss = ((out - target) ** 2).mean()
        loss.backward()
        grads.append([x.grad] + [p.grad for p in model.parameters()])
    if clip is not None:  # the clip must really have been active
        assert out.detach().abs().max().item() == pytest.approx(clip * 0.5)
    for lean_g, plain_g in zip(*grads, strict=True):
        rel = (lean_g - plain_g).norm() / plain_g.norm()
        assert rel < 1e-6


def _grads(model, x0, target, **kw):
    x = x0.clone().requires_grad_(True)
    out = model(x, 3.05, 0.1, **kw)  # 30 steps: segments of 7 leave a partial one
    ((out - target) ** 2).mean().backward()
    return out.detach(), [x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("clip", [None, 1.5])
@pytest.mark.parametrize("segment", [1, 7, "auto", 30, 500])
def test_checkpointed_segments_give_the_same_gradients(small_patterns, clip, segment):
    x0 = torch.rand(6, 20, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    target = small_patterns[torch.tensor([0, 1, 2, 0, 1, 2])]
    ref_out, ref = _grads(_model(small_patterns, clip=clip, eig_mean=-1.0), x0, target)
    out, got = _grads(
        _model(small_patterns, clip=clip, eig_mean=-1.0), x0, target, grad_segment=segment
    )
    assert torch.equal(out, ref_out)  # the forward pass is the same arithmetic
    assert torch.equal(got[0], ref[0])  # so is the chain through the states
    for g, r in zip(got[1:], ref[1:], strict=True):  # weight sums split at other steps
        assert ((g - r).norm() / r.norm()).item() < 1e-12


def test_checkpointed_segments_save_fewer_states(small_patterns):
    from sanode.lab.bench import _saved_bytes

    model = _model(small_patterns, dtype=torch.float32)
    x0 = torch.rand(8, 20, generator=torch.Generator().manual_seed(5))
    state = 8 * 20 * 4
    full = _saved_bytes(lambda: model(x0, 10.0, 0.1))  # 100 steps: 101 states + W
    seg = _saved_bytes(lambda: model(x0, 10.0, 0.1, grad_segment="auto"))  # every 10th
    assert full - seg == (101 - 10) * state  # the rest (W, the coupling's solve) is shared


def test_bad_segment_is_refused(small_patterns):
    model = _model(small_patterns)
    with pytest.raises(ValueError, match="segment must be a positive step count"):
        model(torch.zeros(1, 20), 1.0, 0.1, grad_segment=-2)


def test_lean_euler_float32_forward_matches_plain(small_patterns):
    model = _model(small_patterns, dtype=torch.float32)
    x0 = torch.rand(5, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.integrate(x0, 5.5, 0.1)
    lean = model(x0, 5.5, 0.1)
    assert lean.dtype == torch.float32
    assert torch.allclose(lean, plain, atol=1e-6)


def test_reverse_integration_recovers_input_for_short_horizon(small_patterns):
    model = _model(small_patterns)
    x0 = torch.rand(4, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        forward = model.integrate(x0, 0.5, 0.01, method="rk4")
        back = model.integrate(forward, 0.5, 0.01, method="rk4", reverse=True)
    assert (back - x0).abs().max() < 1e-8


def test_record_every_shapes(small_patterns):
    model = _model(small_patterns)
    times, states = model.integrate(torch.zeros(2, 20), 1.0, 0.1, record_every=5)
    assert times.tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert states.shape == (3, 2, 20)


def test_bad_inputs_are_explained(small_patterns):
    model = _model(small_patterns)
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        model.integrate(torch.zeros(3, 7), 1.0, 0.1)
    with pytest.raises(ValueError, match="dtype"):
        SANode(small_patterns, dtype=torch.float16)
    with pytest.raises(ValueError, match="clip"):
        SANode(small_patterns, clip=0.5)


def test_same_seed_same_model(small_patterns):
    a, b = _model(small_patterns), _model(small_patterns)
    assert torch.equal(a.coupling(), b.coupling())
    c = SANode(small_patterns, dtype=torch.float64, seed=4)
    assert not torch.equal(a.coupling(), c.coupling())


def test_a_model_pickled_before_the_products_value_still_loads(small_patterns):
    """MLflow registry versions of older code pickled SANode with ``_matmul_dtype`` and
    ``split_products``: they unpickle to the same products (evaluation: bfloat16x2)."""
    import pickle

    model = SANode(small_patterns, products="bfloat16", eval_products="bfloat16x2")
    state = model.__dict__.copy()
    del state["_products"], state["_eval_products"]
    state.update(_matmul_dtype=torch.bfloat16, split_products=True)
    old = SANode.__new__(SANode)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    assert again.products == Products("bfloat16") and again.eval_products == Products("bfloat16x2")
    x = torch.rand(3, small_patterns.shape[1])
    with torch.no_grad():
        assert torch.equal(again(x, 1.0, 0.1), model(x, 1.0, 0.1))
