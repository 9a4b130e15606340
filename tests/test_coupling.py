"""The coupling matrix A = Phi diag(lambda) Phi^-1 and its written-out backward pass
(``sanode.core.coupling``) through either LAPACK, and the thread settings that let scipy's
OpenBLAS share the cores with torch (``sanode.core.lapack_env``). Speed: ``sanode bench
--lapack``, ``sanode/lab/scripts/coupling_routes.py``; never here."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from sanode import block_patterns
from sanode.core import coupling, lapack_env
from sanode.core.coupling import coupling_matrix, lapack_route
from sanode.core.model import SANode
from sanode.training.train import adam

ROUTES = ["torch", "openblas"]


@pytest.fixture
def route(request):
    return request.param


def _model(n=96, k=4, seed=2) -> SANode:
    """Phi far from orthogonal (its columns' norms spread; cond 3.6e4 at the default sizes) and
    some eigenvalues at the bound, so the bound's gradient reaches gamma."""
    model = SANode(block_patterns(n, k, 0.5), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.basis_free.mul_(1 + 0.6 * torch.randn(model.basis_free.shape[1], generator=gen))
        model.basis_free.add_(0.1 * torch.randn(model.basis_free.shape, generator=gen))
        model.eig_free[:3] = 1e3  # clipped to the bound
    return model


def _reference(model: SANode):
    """A and the parameters' gradients of <G, A> through autograd and torch.linalg.solve in
    float64 (the build before sanode.core.coupling), G fixed."""
    phi = model.basis()
    a = torch.linalg.solve(phi, phi * model.eigenvalues(), left=False)
    return a, _grads(model, a)


def _grads(model: SANode, a: torch.Tensor) -> list[torch.Tensor]:
    n = a.shape[0]
    g = torch.randn(n, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    params = [model.basis_free, model.eig_free, model.gamma]
    # A enters the loop transposed: the incoming gradient is a transposed (strided) view
    return list(torch.autograd.grad((a.T * g.to(a.dtype)).sum(), params))


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double(), ref.detach()
    return float((x - ref).norm() / ref.norm())


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_float64_build_and_gradients_match_autograd_through_the_solve(route):
    model = _model()
    model.lapack = route
    assert float(torch.linalg.cond(model.basis().detach())) > 1e4
    ref_a, ref_grads = _reference(model)
    a = coupling_matrix(model.basis_free, model.eigenvalues(), model.basis_fixed, torch.float64)
    assert a.dtype == torch.float64 and a.is_contiguous()
    assert _rel(a, ref_a) < 1e-10
    # and A is Phi diag(lambda) Phi^-1
    phi = model.basis().detach()
    exact = (phi * model.eigenvalues().detach()) @ torch.linalg.inv(phi)
    assert _rel(a.detach(), exact) < 1e-10
    for grad, ref in zip(_grads(model, a), ref_grads, strict=True):
        assert _rel(grad, ref) < 1e-10
    assert float(ref_grads[2].abs()) > 0  # the bound's gradient reached gamma


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_float32_build_keeps_the_patterns_in_the_kernel_and_gradients_close(route):
    model = _model()
    model.lapack = route
    ref_a, ref_grads = _reference(model)
    a = model.coupling(torch.float32)
    assert a.dtype == torch.float32
    # the planted patterns in the kernel to float32 rounding (the model docstring's tolerance)
    kernel = float((a.detach().double() @ model.patterns.T).abs().max())
    assert kernel < 5e-5 * float(ref_a.detach().abs().max()), kernel
    # A's error: cond(Phi) 3.6e4 times float32 rounding at most, and in fact far below the
    # bfloat16 rounding of A that bfloat16 products apply (LU of Phi^T, pivoting on the
    # eigenvectors' spread norms, gave 3.4e-4 here, 8x the error of LU of Phi)
    assert _rel(a.detach(), ref_a.detach()) < 1e-4
    for grad, ref in zip(_grads(model, a), ref_grads, strict=True):
        assert grad.dtype == torch.float64
        assert _rel(grad, ref) < 1e-3


def test_both_routes_agree_and_leave_the_incoming_gradient_alone():
    model = _model()
    out = {}
    for name in ROUTES:
        model.lapack = name  # the route travels with the model
        a = model.coupling(torch.float64)
        g = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=a.dtype)
        kept = g.clone()
        a.backward(g)
        assert torch.equal(g, kept)  # the OpenBLAS solve overwrites its own copy only
        out[name] = (a.detach(), model.basis_free.grad.clone(), model.eig_free.grad.clone())
        model.zero_grad(set_to_none=True)
    for x, y in zip(out["torch"], out["openblas"], strict=True):
        assert _rel(x, y) < 1e-11


def test_bad_inputs_say_what_to_pass():
    model = _model()
    args = (model.basis_free, model.eigenvalues(), model.basis_fixed)
    with pytest.raises(ValueError, match=r"float32 or torch\.float64"):
        coupling_matrix(*args, torch.bfloat16)
    with pytest.raises(ValueError, match=r"free \(N, N-K\)"):
        coupling_matrix(model.basis_free, model.eigenvalues()[1:], model.basis_fixed,
                        torch.float64)  # fmt: skip
    with pytest.raises(ValueError, match="choose one of"):
        coupling_matrix(*args, torch.float64, lapack="mkl")
    with torch.no_grad():
        model.basis_free.zero_()
    with pytest.raises(RuntimeError, match="zero"):  # a singular Phi: torch's LU says so
        model.coupling()


def test_the_route_follows_the_device_the_choice_and_the_thread_settings(monkeypatch):
    cpu = torch.device("cpu")
    assert lapack_route(torch.device("cuda"), torch.float32) == "torch"
    monkeypatch.setattr(lapack_env, "_late", set())
    for name in lapack_env.SETTINGS:
        monkeypatch.setenv(name, "4")
    assert lapack_env.in_force()
    assert lapack_route(cpu, torch.float32) == "openblas"
    monkeypatch.setattr(lapack_env, "_late", {"GOMP_SPINCOUNT"})
    assert not lapack_env.in_force()
    assert lapack_route(cpu, torch.float64) == "torch"  # settings too late: torch's solves
    # asked for by name (a run's measured choice, or a bench's)
    assert lapack_route(cpu, torch.float64, "openblas") == "openblas"
    assert lapack_route(torch.device("cuda"), torch.float64, "openblas") == "torch"
    monkeypatch.setattr(lapack_env, "_late", set())
    assert lapack_route(cpu, torch.float32, "torch") == "torch"


def test_prepare_sets_what_the_environment_lacks_keeps_the_users_and_notes_late(monkeypatch):
    monkeypatch.setattr(lapack_env, "_late", set())
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "12345")  # the user's own
    monkeypatch.setitem(sys.modules, "scipy.linalg", sys.modules.get("scipy.linalg", os))
    lapack_env.prepare()
    assert os.environ["GOMP_SPINCOUNT"] == "12345"
    # scipy.linalg had loaded: set for child processes, but late in this one
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "4"
    assert lapack_env.late() == ["OPENBLAS_THREAD_TIMEOUT"]
    assert not lapack_env.in_force()
    lapack_env.prepare()  # idempotent
    assert lapack_env.late() == ["OPENBLAS_THREAD_TIMEOUT"]


def test_a_fresh_interpreter_importing_sanode_first_has_the_settings_in_force():
    import subprocess

    code = (
        "import sanode, torch; from sanode.core import lapack_env, coupling; "
        "print(lapack_env.in_force(), coupling.lapack_route(torch.device('cpu'), "
        "torch.float32))"
    )
    env = {k: v for k, v in os.environ.items() if k not in lapack_env.SETTINGS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "openblas"]
    late = subprocess.run([sys.executable, "-c", "import torch; " + code], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert late.stdout.split() == ["False", "torch"]


def test_openblas_runs_as_many_threads_as_torch():
    from threadpoolctl import threadpool_info

    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            model = _model(n=24, k=2)
            model.lapack = "openblas"
            model.coupling(torch.float32)
            scipy_blas = [i for i in threadpool_info() if "scipy" in i["filepath"]]
            assert scipy_blas and all(i["num_threads"] == n for i in scipy_blas)
    finally:
        torch.set_num_threads(2)
        coupling._threads = 0


def test_fused_adam_takes_the_same_step_as_the_per_tensor_loop():
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(30, 20, generator=gen, dtype=torch.float64),
             torch.randn(20, generator=gen, dtype=torch.float64)]  # fmt: skip
    grads = [[torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in start]
             for _ in range(5)]  # fmt: skip
    out = []
    for make in (lambda ps: adam([{"params": [p]} for p in ps], lr=0.01),
                 lambda ps: torch.optim.Adam(ps, lr=0.01)):  # fmt: skip
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(params)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        out.append(params)
    assert opt.defaults["fused"] is None and out  # the second: the per-tensor loop
    assert adam([torch.nn.Parameter(start[0].clone())], lr=0.01).defaults["fused"] is True
    for p, q in zip(*out, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
