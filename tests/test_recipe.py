"""The training recipe: learning-rate schedules, per-block rates, clipping, divergence."""

import itertools
import math

import pytest
import torch

from sanode.config import ConfigError, TrainConfig
from sanode.core.model import SANode
from sanode.core.patterns import block_patterns
from sanode.data.datasets import load_split
from sanode.training.checkpoint import load_checkpoint
from sanode.training.train import DivergenceError, make_optimizer, make_scheduler, train

FAST = dict(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, t_train=5.5,
            t_eval=20.0, epochs=4, seed=0)  # fmt: skip


def _data(cfg):
    split = load_split(cfg, "train")
    return split.x, split.y, split.patterns


def _lrs(cfg, steps_per_epoch=10):
    model = SANode(block_patterns(20, 3, 0.5))
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_schedules_have_their_shape():
    const = _lrs(TrainConfig(lr=0.01, epochs=2))
    assert all(lrs == [0.01] * 3 for lrs in const)
    cos = _lrs(TrainConfig(lr=0.01, epochs=2, lr_schedule="cosine", lr_warmup=0.1, lr_final=0.1))
    first = [lrs[0] for lrs in cos]
    assert first[0] == pytest.approx(0.01 / 2)  # step 1 of a 2-step warm-up
    assert max(first) == pytest.approx(0.01)
    assert first[-1] == pytest.approx(0.001, rel=0.1)  # decays to lr_final * lr
    assert all(a >= b for a, b in itertools.pairwise(first[2:]))  # monotone after warm-up
    one = _lrs(TrainConfig(lr=0.01, epochs=4, lr_schedule="onecycle", lr_warmup=0.25))
    first = [lrs[0] for lrs in one]
    peak = max(range(len(first)), key=first.__getitem__)
    assert first[0] == pytest.approx(0.01 / 25) and first[peak] == pytest.approx(0.01)
    assert peak == pytest.approx(0.25 * 40, abs=1) and first[-1] < 1e-5


def test_block_multipliers_scale_each_group():
    cfg = TrainConfig(lr=0.01, epochs=1, lr_eig_mult=3.0, lr_gamma_mult=0.5,
                      lr_schedule="onecycle", lr_warmup=0.3)  # fmt: skip
    lrs = _lrs(cfg)
    for basis, eig, gamma in lrs:
        assert eig == pytest.approx(3 * basis) and gamma == pytest.approx(0.5 * basis)


def test_recipe_settings_are_validated():
    with pytest.raises(ConfigError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ConfigError, match="onecycle' needs a warm-up"):
        TrainConfig(lr_schedule="onecycle")
    with pytest.raises(ConfigError, match=r"lr_warmup must lie in \[0, 1\)"):
        TrainConfig(lr_warmup=1.5)
    with pytest.raises(ConfigError, match="lr_eig_mult must be a positive number"):
        TrainConfig(lr_eig_mult=0)
    with pytest.raises(ConfigError, match="divergence_factor must be > 1"):
        TrainConfig(divergence_factor=0.5)


def test_schedule_resumes_exactly_across_a_kill(tmp_path):
    """A run killed after epoch 2 and restarted gives the numbers of the uninterrupted run
    (the scheduler's position, Adam's state and the per-block rates are in the checkpoint)."""
    cfg = TrainConfig(**FAST, lr_schedule="onecycle", lr_warmup=0.3, lr_eig_mult=2.0,
                      grad_clip_norm=1.0, eps_train=0.2)  # fmt: skip
    x, y, patterns = _data(cfg)
    straight = train(cfg, x, y, patterns, checkpoint_path=tmp_path / "a.pt", progress=False)

    class Kill(Exception):
        pass

    def kill_after_two(epoch, record, model):
        if epoch == 2:
            raise Kill

    with pytest.raises(Kill):
        train(cfg, x, y, patterns, checkpoint_path=tmp_path / "b.pt", progress=False,
              callback=kill_after_two)  # fmt: skip
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 2
    resumed = train(cfg, x, y, patterns, checkpoint_path=tmp_path / "b.pt", progress=False)
    assert resumed.history == straight.history
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    # the schedule's length is part of the run: more epochs cannot resume it
    with pytest.raises(ValueError, match=r"different settings \['epochs'\]"):
        train(cfg.replace(epochs=6), x, y, patterns, checkpoint_path=tmp_path / "b.pt",
              progress=False)  # fmt: skip


def test_onecycle_recipe_trains_letters():
    cfg = TrainConfig(**{**FAST, "epochs": 8}, lr_schedule="onecycle", lr_warmup=0.2)
    x, y, patterns = _data(cfg)
    test = load_split(cfg, "test")
    result = train(cfg, x, y, patterns, val=(test.x, test.y), progress=False)
    assert result.history[-1]["val_accuracy"] == 1.0
    assert result.history[-1]["learning_rate"] < cfg.lr / 100  # annealed


def test_rising_loss_stops_the_run_and_keeps_the_last_sane_epoch(tmp_path):
    """`sanode train --lr 10` used to exit 0 with a garbage model (loss 0.35 -> 25)."""
    cfg = TrainConfig(**{**FAST, "letters_copies": 5, "batch_size": 5, "epochs": 6, "lr": 10.0})
    x, y, patterns = _data(cfg)
    path = tmp_path / "d.pt"
    with pytest.raises(DivergenceError, match=r"over 10x the first batch's"):
        train(cfg, x, y, patterns, checkpoint_path=path, progress=False)
    if path.is_file():  # epochs before the blow-up are kept, and they are sane
        state = load_checkpoint(path)
        assert all(r["train_loss"] <= 10 * state["initial_loss"] for r in state["history"])
        assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_exploding_parameters_are_divergence(tmp_path):
    """`--lr 1e300` used to keep a checkpoint with parameters of ~1e300."""
    cfg = TrainConfig(**{**FAST, "epochs": 2, "lr": 1e300}, divergence_factor=None)
    x, y, patterns = _data(cfg)
    path = tmp_path / "e.pt"
    with pytest.raises(DivergenceError):
        train(cfg, x, y, patterns, checkpoint_path=path, progress=False)
    assert not path.exists()  # no epoch ever ended sane
    assert math.isfinite(cfg.lr)
