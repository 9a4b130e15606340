"""CUDA paths: skipped cleanly where no GPU is present (CI never has one)."""

import pytest
import torch

from sanode import SANode, block_patterns
from sanode.config import TrainConfig
from sanode.data.datasets import load_split
from sanode.training.evaluate import evaluate
from sanode.training.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_lean_euler_gradients_match_on_gpu():
    patterns = block_patterns(64, 4)
    x0 = torch.rand(16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = []
    for device in ("cpu", "cuda"):
        model = SANode(patterns, dtype=torch.float64, seed=1).to(device)
        out = model(x0.to(device), 3.0, 0.1)
        (out**2).mean().backward()
        grads.append([p.grad.cpu() for p in model.parameters()])
    for cpu, gpu in zip(*grads, strict=True):
        assert torch.allclose(cpu, gpu, rtol=1e-9, atol=1e-12)


def test_letters_training_on_gpu_reaches_full_accuracy():
    cfg = TrainConfig(
        dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, epochs=15, device="cuda"
    )
    split = load_split(cfg, "train")
    model = train(cfg, split.x, split.y, split.patterns, progress=False).model
    assert model.gamma.device.type == "cuda"
    assert evaluate(model, split.x, split.y, t_end=20.0, dt=0.1).accuracy == 1.0


def test_checkpointed_segments_and_tf32_on_gpu():
    """grad_segment gives the same gradients on CUDA; TF32 training still learns the letters
    and the early-exit evaluation gives the fixed-horizon buckets there too."""
    patterns = block_patterns(64, 4)
    x0 = torch.rand(16, 64, generator=torch.Generator().manual_seed(0)).cuda()
    grads = []
    for segment in (None, "auto"):
        model = SANode(patterns, dtype=torch.float64, seed=1).cuda()
        (model(x0.double(), 6.0, 0.1, grad_segment=segment) ** 2).mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert ((a - b).norm() / b.norm()).item() < 1e-12
    cfg = TrainConfig(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, epochs=15,
                      device="cuda", matmul_precision="high", grad_segment="auto")  # fmt: skip
    split = load_split(cfg, "train")
    model = train(cfg, split.x, split.y, split.patterns, progress=False).model
    fixed = evaluate(model, split.x, split.y, t_end=40.0, dt=0.1)
    early = evaluate(model, split.x, split.y, t_end=40.0, dt=0.1, tol=1e-4)
    assert fixed.accuracy == 1.0 and early.buckets == fixed.buckets


def test_bfloat16_products_on_gpu():
    """bfloat16 tensor-core products: gradients close to the CPU float32 ones, letters learnt."""
    patterns = block_patterns(20, 3)
    x0 = torch.rand(16, 20, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.3
    target = patterns[torch.arange(16) % 3].float()
    grads = []
    for device, mm in (("cpu", None), ("cuda", "bfloat16")):
        model = SANode(patterns, seed=1, eig_mean=-1.0, clip=None, products=mm).to(device)
        ((model(x0.to(device), 3.0, 0.1) - target.to(device)) ** 2).mean().backward()
        grads.append([p.grad.cpu() for p in model.parameters()])
    for ref, got in zip(*grads, strict=True):
        assert ((got - ref).norm() / ref.norm()).item() < 0.02
    cfg = TrainConfig(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, epochs=15,
                      device="cuda", train_products="bfloat16")  # fmt: skip
    split = load_split(cfg, "train")
    model = train(cfg, split.x, split.y, split.patterns, progress=False).model
    assert model.dynamics().linear_t.dtype == torch.bfloat16
    assert evaluate(model, split.x, split.y, t_end=20.0, dt=0.1).accuracy == 1.0
