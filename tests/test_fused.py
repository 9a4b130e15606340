"""fuse_steps: each Euler step's elementwise work as one compiled kernel (bfloat16 products)."""

import pytest
import torch

from sanode import block_patterns
from sanode.config import TrainConfig
from sanode.core import fused
from sanode.core.euler_grad import euler_loop
from sanode.core.model import SANode

# relative, as tests/test_bfloat16.py: bfloat16 products against float32 autograd
BF16_TOL = {None: 0.02, 1.5: 0.1}


@pytest.fixture
def calls(monkeypatch):
    """How often each compiled kernel ran (so a test knows the fused path was taken)."""
    counts = {"forward": 0, "backward": 0}
    real = fused.kernel

    def counting(name):
        compiled = real(name)

        def call(*args):
            counts[name] += 1
            compiled(*args)

        return call

    monkeypatch.setattr(fused, "kernel", counting)
    return counts


def _grads(model, x0, target, **kw):
    x = x0.clone().requires_grad_(True)
    out = model(x, 3.0, 0.1, **kw) if kw else model.integrate(x, 3.0, 0.1)
    ((out - target) ** 2).mean().backward()
    return out.detach(), [x.grad] + [p.grad for p in model.parameters()]


def test_one_fused_step_is_the_eager_step_to_float32_rounding(calls):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 20, generator=gen) * 2 - 1
    w = torch.randn(20, 20, generator=gen) * 0.1
    p, q = torch.tensor(1.02), torch.tensor(0.08)
    for clip in (None, 0.9):
        kw = dict(clip=clip, mm_dtype=torch.bfloat16)
        eager = euler_loop(x0, w, p, q, 1, **kw)
        got = euler_loop(x0, w, p, q, 1, fused=True, **kw)
        assert (got - eager).abs().max() < 1e-6
        if clip is not None:
            assert got.abs().max() == clip  # the clamp is in the kernel
    assert calls["forward"] == 2


@pytest.mark.parametrize("segment", [None, 7])
@pytest.mark.parametrize("clip", [None, 1.5])
def test_fused_gradients_agree_with_float32_autograd(calls, segment, clip):
    """States, dL/dx0 and every parameter's gradient: as close to float32 autograd as the eager
    bfloat16 loop, with and without checkpointed segments and the clip (whose masked steps
    stay eager)."""
    patterns = block_patterns(20, 3, 0.5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 20, generator=gen) * 1.6 - 0.3
    target = patterns[torch.arange(16) % 3].float()
    kw = dict(seed=1, eig_mean=-1.0, clip=clip)
    ref_out, ref = _grads(SANode(patterns, **kw), x0, target)  # float32, plain autograd
    model = SANode(patterns, products="bfloat16", **kw)
    eager_out, eager = _grads(model, x0, target, grad_segment=segment)
    out, got = _grads(SANode(patterns, products="bfloat16", **kw), x0, target,
                      grad_segment=segment, fuse_steps=True)  # fmt: skip
    assert calls["forward"] > 0
    assert calls["backward"] > 0 or clip is not None  # all steps masked: eager (next test)
    assert 0 < (out - ref_out).abs().max() < 0.02
    assert (out - eager_out).abs().max() < 0.02
    for g, r, e in zip(got, ref, eager, strict=True):
        assert g.dtype == r.dtype
        assert ((g - r).norm() / r.norm()).item() < BF16_TOL[clip]
        assert ((g - e).norm() / e.norm()).item() < BF16_TOL[clip]


def test_fuse_steps_is_ignored_without_bfloat16_products(calls):
    """float32 / float64 products keep their eager passes (addmm): same bits, no kernel."""
    patterns = block_patterns(20, 3, 0.5)
    x0 = torch.rand(4, 20, generator=torch.Generator().manual_seed(2))
    model = SANode(patterns, seed=1, dtype=torch.float64)
    with torch.enable_grad():
        a = model(x0, 2.0, 0.1)
        b = model(x0, 2.0, 0.1, fuse_steps=True)
    assert torch.equal(a, b)
    assert calls == {"forward": 0, "backward": 0}


def test_fuse_steps_is_an_execution_setting():
    """A run may resume with the kernels on or off: the flag is not part of what a study's
    digest covers, and the config takes only a bool."""
    from sanode.config import EXECUTION_KEYS, ConfigError

    assert "fuse_steps" in EXECUTION_KEYS
    assert TrainConfig(fuse_steps=True).fuse_steps is True
    with pytest.raises(ConfigError, match="fuse_steps"):
        TrainConfig(fuse_steps="yes")


def test_free_and_masked_chunks_mix(calls):
    """States that reach the clip half-way: the chunks before run the fused backward kernel,
    the ones after the eager masked steps; gradients as the eager loop's."""
    gen = torch.Generator().manual_seed(3)
    x0 = (torch.rand(8, 20, generator=gen) * 0.2 + 0.5).requires_grad_(True)
    w = (torch.randn(20, 20, generator=gen) * 0.01).requires_grad_(True)
    p = torch.tensor(1.1, requires_grad=True)
    q = torch.tensor(0.01, requires_grad=True)
    grads = []
    for on in (False, True):
        out = euler_loop(x0, w, p, q, 12, clip=0.9, chunk=2, mm_dtype=torch.bfloat16, fused=on)
        assert 0 < (out.abs() == 0.9).float().mean() < 1  # some states on the clip at the end
        grads.append(torch.autograd.grad((out * out).sum(), (x0, w, p, q)))
    assert calls["backward"] > 0
    for e, g in zip(*grads, strict=True):
        assert ((g - e).norm() / e.norm()).item() < 0.02


def test_training_with_fused_steps_resumes_and_trains_as_the_eager_loop(tmp_path, calls):
    """Two letters epochs with bfloat16 products, fused against eager: the same training to
    bfloat16 tolerance; a checkpoint written without the kernels resumes with them."""
    from sanode.data.datasets import load_split
    from sanode.training.train import train

    cfg = TrainConfig(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, t_train=5.5,
                      t_eval=20.0, epochs=2, seed=0, train_products="bfloat16")  # fmt: skip
    split = load_split(cfg, "train")
    data = (split.x, split.y, split.patterns)
    eager = train(cfg, *data, progress=False)
    assert calls["forward"] == 0
    got = train(cfg.replace(fuse_steps=True), *data, progress=False)
    assert calls["forward"] > 0 and calls["backward"] > 0
    for a, b in zip(eager.history, got.history, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 0.05 * a["train_loss"]
    train(cfg.replace(epochs=1), *data, checkpoint_path=tmp_path / "f.pt", progress=False)
    resumed = train(cfg.replace(fuse_steps=True), *data, checkpoint_path=tmp_path / "f.pt",
                    progress=False)  # fmt: skip
    assert len(resumed.history) == 2
