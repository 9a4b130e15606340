"""The products' route (sanode.core.gemm): oneDNN's linear kernel with packed operands against
torch.mm, the route rule, and the loops that use it. Speed is measured in ``sanode bench
--paired`` and ``sanode/lab/scripts/step_parts.py``, never here."""

import pytest
import torch

from sanode import block_patterns
from sanode.core import gemm
from sanode.core.euler_grad import euler_loop
from sanode.core.integrate import Dynamics, integrate
from sanode.core.model import SANode
from sanode.core.products import Products, native_bfloat16

ONEDNN = pytest.mark.skipif(
    not gemm.onednn_available(), reason="this torch build has no oneDNN linear kernels"
)
# oneDNN multiplies bfloat16 only on CPUs it has bfloat16 kernels for (not an AVX2-only one)
BF16 = pytest.mark.skipif(not native_bfloat16(), reason="oneDNN has no bfloat16 kernels here")
CPU = torch.device("cpu")


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref).norm() / ref.norm())


def test_route_rule(monkeypatch):
    with pytest.raises(ValueError, match="choose one of"):
        gemm.gemm_route(CPU, torch.float32, route="mkl")
    big = 784 * 784
    for route in ("auto", "onednn", "torch"):
        if route == "onednn" and not gemm.onednn_available():
            continue
        # float64, CUDA: torch's own GEMM whatever the route
        assert gemm.gemm_route(CPU, torch.float64, big, route) == "torch"
        assert gemm.gemm_route(torch.device("cuda"), torch.float32, big, route) == "torch"
    assert gemm.gemm_route(CPU, torch.float32, big, "torch") == "torch"
    if not gemm.onednn_available():
        return
    assert gemm.gemm_route(CPU, torch.float32, 4, "onednn") == "onednn"  # by name: any size
    # bfloat16 by name: oneDNN where it has bfloat16 kernels for this CPU
    bf16 = "onednn" if native_bfloat16() else "torch"
    assert gemm.gemm_route(CPU, torch.bfloat16, big, "onednn") == bf16
    # one-off bfloat16 products stay torch.mm (faster there without a packed operand)
    calls = []
    monkeypatch.setattr(gemm, "_linear", lambda a, b: calls.append(a.dtype) or a @ b.t())
    for dtype in (torch.bfloat16, torch.float32):
        ones = torch.ones(300, 300, dtype=dtype)
        gemm.matmul(ones, ones, "onednn")
    assert calls == [torch.float32]
    # auto (a value built without measuring): oneDNN only where MKL runs on an AMD processor
    for amd in (True, False):
        monkeypatch.setattr(gemm, "_mkl_on_amd", lambda amd=amd: amd)
        expected = "onednn" if amd else "torch"
        assert gemm.gemm_route(CPU, torch.float32, big) == expected
        assert gemm.gemm_route(CPU, torch.float32, gemm.MIN_SIZE - 1) == "torch"  # small: mm


def test_without_onednn_every_route_is_torchs_and_the_bench_says_what_to_do(monkeypatch, capsys):
    from sanode.cli import main

    monkeypatch.setattr(gemm, "onednn_available", lambda: False)
    assert gemm.gemm_route(CPU, torch.float32, route="onednn") == "torch"
    with pytest.raises(SystemExit):
        main(["bench", "--gemm", "onednn", "--n", "16", "--k", "2"])
    assert "use --gemm torch" in capsys.readouterr().err


@ONEDNN
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=BF16)])
def test_products_agree_with_float64_on_both_routes(dtype):
    gen = torch.Generator().manual_seed(0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    w = torch.randn(300, 260, generator=gen).to(dtype)
    wide = torch.randn(300, 310, generator=gen).to(dtype)
    for route in ("onednn", "torch"):
        weight = gemm.Weight(w, 64, route)
        assert weight.route == route and (weight.packed is None) == (route == "torch")
        for batch in (1, 7, 64, 129):  # any batch, whatever the packing hint
            x = torch.randn(batch, 300, generator=gen).to(dtype)
            assert _rel(weight(x), x.double() @ w.double()) < tol
        out = torch.empty(5, 260, dtype=dtype)
        x = torch.randn(5, 300, generator=gen).to(dtype)
        got = weight(x, out=out)
        assert (got is out) == (route == "torch") and _rel(got, x.double() @ w.double()) < tol
        # one-off products of views: transposed, and a column slice of a wider matrix
        a = torch.randn(300, 280, generator=gen).to(dtype)
        sliced = wide[:, :260]
        for lhs, rhs in ((a.t(), w), (a.t(), sliced), (w.t(), a)):
            ref = lhs.double() @ rhs.double()
            assert _rel(gemm.matmul(lhs, rhs, route), ref) < tol
            c = torch.randn(ref.shape, generator=gen).to(dtype)
            expected = c.double() - 2.0 * ref
            assert _rel(gemm.addmm_(c, lhs, rhs, alpha=-2.0, route=route), expected) < tol


@ONEDNN
@pytest.mark.parametrize("mm_dtype", [None, pytest.param(torch.bfloat16, marks=BF16)])
def test_the_euler_loop_trains_alike_on_both_routes(mm_dtype):
    # the lean backward pass's products (forward, dL/dx, dL/dW) through either route: the
    # same gradients to the products' rounding
    gen = torch.Generator().manual_seed(1)
    n, b = 300, 16
    x0 = (torch.rand(b, n, generator=gen) - 0.5).requires_grad_()
    w = (0.02 * torch.randn(n, n, generator=gen)).requires_grad_()
    p, q = torch.tensor(1.04, requires_grad=True), torch.tensor(0.16, requires_grad=True)
    target = torch.randn(b, n, generator=gen)
    grads = {}
    for route in ("torch", "onednn"):
        out = euler_loop(x0, w, p, q, 20, clip=5.0, chunk=8, mm_dtype=mm_dtype, route=route)
        grads[route] = torch.autograd.grad(((out - target) ** 2).sum(), (x0, w, p, q))
    tol = 1e-5 if mm_dtype is None else 2e-2
    for a, b_ in zip(grads["onednn"], grads["torch"], strict=True):
        assert _rel(a, b_.double()) < tol


@ONEDNN
def test_coupling_and_evaluation_use_the_route_and_keep_autograd():
    model = SANode(block_patterns(256, 4, 0.5), seed=0)  # 256 x 256: oneDNN where chosen
    x0 = torch.rand(9, 256, generator=torch.Generator().manual_seed(2)) - 0.5
    finals, grads = {}, {}
    for route in ("torch", "onednn"):
        model.products = model.eval_products = Products("float32", route)  # the model's route
        model.zero_grad()
        a = model.coupling(torch.float32)  # its backward's N^3 product takes the route
        (a * torch.linspace(-1, 1, a.numel()).view_as(a)).sum().backward()
        grads[route] = model.basis_free.grad.clone()
        with torch.no_grad():
            dyn = model.dynamics(torch.float32)
            finals[route] = integrate(dyn, x0, 3.0, 0.1)
            assert (dyn._packed[0] is None) == (route == "torch")
    assert _rel(grads["onednn"], grads["torch"].double()) < 1e-5
    assert _rel(finals["onednn"], finals["torch"].double()) < 1e-5
    # where a gradient is recorded the field stays on torch.mm (oneDNN's kernel has none)
    dyn = model.dynamics(torch.float32)
    assert dyn.route == "onednn"
    x = x0.clone().requires_grad_()
    integrate(dyn, x, 0.5, 0.1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and not dyn._packed


@ONEDNN
@BF16
def test_two_part_bfloat16_packs_both_parts():
    model = SANode(block_patterns(256, 4, 0.5), seed=0)
    x0 = torch.rand(9, 256, generator=torch.Generator().manual_seed(2)) - 0.5
    dyn = model.dynamics(torch.float32)
    split = Dynamics(dyn.linear_t.detach().bfloat16(), dyn.c1, dyn.c2, None,
                     torch.zeros(256, 256, dtype=torch.bfloat16), route="onednn")  # fmt: skip
    with torch.no_grad():
        split.field(x0)
    hi, lo = split._packed[0]
    assert hi.w is split.linear_t and lo.w is split.linear_lo_t


def test_bfloat16_takes_torch_where_onednn_has_no_bfloat16_kernels(monkeypatch):
    """On an AVX2-only CPU oneDNN refuses to pack a bfloat16 weight ("bf16 path needs the cpu
    support avx_ne_convert or avx512bw, avx512vl and avx512dq"): such products go to torch.mm."""
    from sanode.core import products

    monkeypatch.setattr(products, "native_bfloat16", lambda device=None: False)
    big = 784 * 784
    assert gemm.gemm_route(CPU, torch.bfloat16, big, "onednn") == "torch"
    assert gemm.gemm_route(CPU, torch.bfloat16, big, "auto") == "torch"
    w = torch.randn(64, 32).bfloat16()
    weight = gemm.Weight(w, 8, "onednn")
    assert weight.route == "torch" and weight.packed is None
    x = torch.randn(8, 64).bfloat16()
    assert _rel(weight(x), x.double() @ w.double()) < 1e-2
    if gemm.onednn_available():  # float32 keeps the route asked for
        assert gemm.gemm_route(CPU, torch.float32, big, "onednn") == "onednn"
