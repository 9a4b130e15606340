"""Settings and code paths that make a training epoch cheaper: A built in float32
(``coupling_dtype``), a validation subset (``val_per_class``), reused buffers and kept memory
in the lean Euler loop. Each must leave the maths as stated; speed is measured by
``sanode bench`` / ``sanode time-to-accuracy``, never here."""

from __future__ import annotations

import pytest
import torch

from sanode import block_patterns
from sanode.config import ConfigError, TrainConfig
from sanode.core.euler_grad import euler_loop
from sanode.core.model import SANode
from sanode.data.datasets import load_split
from sanode.training.checkpoint import load_checkpoint, load_model, model_from_config
from sanode.training.memory import keep_freed_memory, track_live_memory
from sanode.training.train import train

FAST = dict(dataset="letters", letters_copies=10, batch_size=25, lr=3e-2, t_train=3.0,
            t_eval=10.0, epochs=3, seed=0, eig_mean=-2.0)  # fmt: skip


def _trained_like(n=784, k=10, seed=3) -> SANode:
    """A model whose eigenvector matrix is far from orthogonal (cond in the thousands, as
    trained models reach), eigenvalues spread up to the clip."""
    model = SANode(block_patterns(n, k, 0.5), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.basis_free.mul_(1 + 0.6 * torch.randn(model.basis_free.shape[1], generator=gen))
        model.basis_free.add_(0.08 * torch.randn(model.basis_free.shape, generator=gen))
        model.eig_free.mul_(3.0)
    return model


@torch.no_grad()
def test_float32_coupling_keeps_the_patterns_in_the_kernel():
    model = _trained_like()
    cond = float(torch.linalg.cond(model.basis()))
    assert cond > 500  # the hard case: a float32 solve alone loses ~cond * 6e-8
    a64 = model.coupling()
    a32 = model.coupling(torch.float32)
    assert a32.dtype == torch.float32
    patterns = model.patterns
    # the stated tolerance (model docstring): |A p| at float32 rounding, against a64's 1e-10
    kernel = float((a32.double() @ patterns.T).abs().max())
    assert kernel < 5e-5 * float(a64.abs().max()), kernel
    # the unprojected float32 solve leaves the patterns further outside the kernel
    phi = model.basis().float()
    raw = torch.linalg.solve(phi, phi * model.eigenvalues().float(), left=False)
    assert float((raw.double() @ patterns.T).abs().max()) > 3 * kernel
    # and A itself agrees with the float64 build well below A's bfloat16 rounding, which
    # bfloat16 products apply anyway (about 10x below at this cond(Phi))
    rel = float((a32.double() - a64).norm() / a64.norm())
    rounding = float((a64.bfloat16().double() - a64).norm() / a64.norm())
    assert rel < rounding / 5, (rel, rounding)


@pytest.mark.parametrize("products", [None, "bfloat16"])
def test_float32_coupling_gradients_agree_with_the_float64_build(products):
    patterns = block_patterns(49, 5, 0.5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 49, generator=gen)
    target = patterns[torch.randint(0, 5, (16,), generator=gen)].float()
    grads = {}
    for name in ("float64", "float32"):
        model = SANode(patterns, seed=1, products=products,
                       coupling_dtype=getattr(torch, name))  # fmt: skip
        loss = torch.nn.functional.mse_loss(model(x0, 3.0, 0.1), target)
        loss.backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    # float32 products: the builds differ by float32 rounding; bfloat16 products: A's two
    # builds may round to neighbouring bfloat16 values, the tolerance of bfloat16 gradients
    tol = 1e-3 if products is None else 2e-2
    for g64, g32 in zip(grads["float64"], grads["float32"], strict=True):
        assert torch.allclose(g32, g64, rtol=tol, atol=tol * float(g64.abs().max()))


def test_coupling_dtype_is_validated_and_travels_with_the_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="coupling_dtype 'float32' needs dtype 'float32'"):
        TrainConfig(dtype="float64", coupling_dtype="float32")
    with pytest.raises(ConfigError, match="coupling_dtype"):
        TrainConfig(coupling_dtype="bfloat16")
    with pytest.raises(ValueError, match="coupling_dtype must be"):
        SANode(block_patterns(16, 2, 0.5), dtype=torch.float64, coupling_dtype=torch.float32)
    cfg = TrainConfig(**FAST, train_products="bfloat16", coupling_dtype="float32",
                      val_per_class=2)  # fmt: skip
    patterns = block_patterns(49, 5, 0.5)
    assert model_from_config(cfg, patterns).coupling_dtype == torch.float32
    split = load_split(cfg, "train")
    test = load_split(cfg, "test", letters_eps=0.0)
    path = tmp_path / "c.pt"
    result = train(cfg, split.x, split.y, split.patterns, val=(test.x, test.y),
                   checkpoint_path=path, progress=False)  # fmt: skip
    assert load_checkpoint(path)["config"]["coupling_dtype"] == "float32"
    model, loaded, _ = load_model(path)
    assert loaded.coupling_dtype == "float32" and model.coupling_dtype == torch.float32
    # evaluation builds A in float64 whatever the training build was
    assert model.dynamics().linear_t.dtype == torch.float32
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name])


def test_validation_subset_is_balanced_and_seeded(monkeypatch):
    import sanode.training.train as train_module

    seen = []
    real = train_module.evaluate

    def spy(model, x, y, **kw):
        seen.append(y.clone())
        return real(model, x, y, **kw)

    monkeypatch.setattr(train_module, "evaluate", spy)
    cfg = TrainConfig(**{**FAST, "epochs": 2}, val_per_class=3)
    split = load_split(cfg, "train")
    test = load_split(cfg, "test", letters_eps=0.0)
    train(cfg, split.x, split.y, split.patterns, val=(test.x, test.y), progress=False)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])  # the same items every epoch
    assert torch.bincount(seen[0]).tolist() == [3] * 5
    with pytest.raises(ConfigError, match="val_per_class must be a positive integer"):
        TrainConfig(val_per_class=0)


@pytest.mark.parametrize("segment", [None, 4])
@pytest.mark.parametrize("clip", [None, 1.2])
def test_lean_loop_reuses_buffers_without_changing_values(segment, clip):
    """Two calls in a row (buffers reused, memory kept) give identical values and gradients,
    and the bfloat16 loop's gradients match plain autograd with the same bfloat16 products."""
    keep_freed_memory()
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(8, 30, generator=gen) * 0.9
    w = (0.05 * torch.randn(30, 30, generator=gen)).requires_grad_()
    p = torch.tensor(1.05, requires_grad=True)
    q = torch.tensor(0.3, requires_grad=True)
    outs = []
    for _ in range(2):
        out = euler_loop(x0, w, p, q, 12, clip=clip, chunk=5, segment=segment,
                         mm_dtype=torch.bfloat16)  # fmt: skip
        gw, gp, gq = torch.autograd.grad((out**2).sum(), (w, p, q))
        outs.append((out, gw, gp, gq))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)
    x, wb = x0, w.to(torch.bfloat16)
    for _ in range(12):  # the same step under plain autograd
        y = x * (p - q * x * x) + (x.to(torch.bfloat16) @ wb).float()
        x = y if clip is None else y.clamp(-clip, clip)
    ref = torch.autograd.grad((x**2).sum(), (w, p, q))
    assert torch.allclose(outs[0][0], x, atol=1e-5)
    for got, want in zip(outs[0][1:], ref, strict=True):
        assert torch.allclose(got, want, rtol=2e-2, atol=2e-2 * float(want.abs().max()))


def test_backward_skips_the_clip_mask_only_where_no_state_is_on_the_clip(monkeypatch):
    """Chunks whose states are all inside the clip take the mask-free steps; the gradients are
    autograd's (float64) and bit-identical to masking every chunk."""
    import sanode.core.euler_backward as eg  # where the backward pass asks for the mask

    gen = torch.Generator().manual_seed(4)
    x0 = (0.3 * torch.rand(6, 20, generator=gen, dtype=torch.float64)).requires_grad_()
    w = (0.02 * torch.randn(20, 20, generator=gen, dtype=torch.float64)).requires_grad_()
    p = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    answers = []
    real = eg._on_clip

    def spy(states, clip):
        answers.append(real(states, clip))
        return answers[-1]

    def grads(segment):
        out = euler_loop(x0, w, p, q, 12, clip=1.0, chunk=3, segment=segment)
        return (out, *torch.autograd.grad((out**3).sum(), (x0, w, p, q)))

    x = x0
    for _ in range(12):
        x = (x * (p - q * x * x) + x @ w).clamp(-1.0, 1.0)
    ref = (x, *torch.autograd.grad((x**3).sum(), (x0, w, p, q)))
    for segment in (None, 4):
        monkeypatch.setattr(eg, "_on_clip", spy)
        answers.clear()
        free = grads(segment)
        assert True in answers and False in answers  # both kinds of chunk
        monkeypatch.setattr(eg, "_on_clip", lambda states, clip: True)
        masked = grads(segment)
        for a, b, want in zip(free, masked, ref, strict=True):
            assert torch.equal(a, b)
            assert torch.allclose(a, want, rtol=1e-10, atol=1e-12)


def test_memory_settings_apply_on_glibc():
    import platform

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected
    assert keep_freed_memory() is expected  # idempotent
    assert track_live_memory() is expected
    assert keep_freed_memory() is expected  # and back, for the tests that follow
