"""The accuracy levers of TrainConfig: the loss on x(T), the horizon schedule, weight
averaging, the final fit on the validation split, the collapse check."""

from __future__ import annotations

import pytest
import torch

from sanode import block_patterns
from sanode.config import ConfigError, TrainConfig
from sanode.core.model import SANode
from sanode.data.augment import shift_images
from sanode.data.datasets import load_split
from sanode.training.checkpoint import load_checkpoint, load_model
from sanode.training.losses import LOSSES, final_state_loss, overlaps
from sanode.training.train import CollapseError, DivergenceError, StallError, train

TRAIN_EVALUATE = "sanode.training.train.evaluate"
FAST = dict(dataset="letters", letters_copies=10, batch_size=25, lr=3e-2, t_train=3.0,
            t_eval=10.0, epochs=4, seed=0, eig_mean=-2.0)  # fmt: skip


def _data(cfg):
    split = load_split(cfg, "train")
    test = load_split(cfg, "test", letters_eps=0.0)
    return split.x, split.y, split.patterns, (test.x, test.y)


# -- losses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", LOSSES)
def test_loss_gradient_matches_finite_differences(kind):
    patterns = block_patterns(24, 3, 0.5)
    gen = torch.Generator().manual_seed(0)
    states = (torch.rand(5, 24, generator=gen, dtype=torch.float64) - 0.5).requires_grad_()
    labels = torch.tensor([0, 1, 2, 1, 0])

    def f(s):
        return final_state_loss(s, patterns, labels, a=0.5, kind=kind, temperature=0.1,
                                margin=0.5, mse_weight=0.3)  # fmt: skip

    assert torch.autograd.gradcheck(f, (states,))


@pytest.mark.parametrize("kind", LOSSES)
def test_lean_euler_gradient_of_each_loss_matches_plain_autograd(kind):
    """The model's lean Euler backward pass and autograd through the plain loop agree for
    every loss (float64)."""
    patterns = block_patterns(30, 3, 0.5)
    x0 = torch.rand(6, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = []
    for lean in (True, False):
        model = SANode(patterns, dtype=torch.float64, seed=3)
        out = model(x0, 2.0, 0.1) if lean else model.integrate(x0, 2.0, 0.1)
        final_state_loss(out, patterns, labels, a=0.5, kind=kind, mse_weight=0.5).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for lean, plain in zip(*grads, strict=True):
        torch.testing.assert_close(lean, plain, rtol=1e-8, atol=1e-12)


def test_mse_is_the_papers_loss_and_the_others_vanish_at_the_attractor():
    patterns = block_patterns(24, 3, 0.5)
    labels = torch.tensor([0, 2])
    states = torch.randn(2, 24, dtype=torch.float64)
    mse = final_state_loss(states, patterns, labels, a=0.5)
    torch.testing.assert_close(mse, torch.nn.functional.mse_loss(states, patterns[labels]))
    at = patterns[labels]
    own = overlaps(at, patterns, 0.5)[[0, 1], [0, 2]]
    assert torch.allclose(own, torch.ones(2, dtype=at.dtype))
    assert final_state_loss(at, patterns, labels, a=0.5, kind="sign_margin") == 0
    ce_near = final_state_loss(at, patterns, labels, a=0.5, kind="overlap_ce", temperature=0.02)
    ce_far = final_state_loss(-at, patterns, labels, a=0.5, kind="overlap_ce", temperature=0.02)
    assert ce_near < 1e-3 < ce_far
    with pytest.raises(ValueError, match="loss must be one of"):
        final_state_loss(at, patterns, labels, a=0.5, kind="hinge")


# -- config ---------------------------------------------------------------------------------------
def test_lever_settings_are_validated_with_how_to_fix():
    with pytest.raises(ConfigError, match=r"loss must be one of \['mse', 'overlap_ce'"):
        TrainConfig(loss="ce")
    with pytest.raises(ConfigError, match=r"t_train_final_epochs in \[1, epochs = 10\]"):
        TrainConfig(t_train_final=20.0, t_train_final_epochs=11)
    assert TrainConfig(t_train_final_epochs=3).horizon(9) == 5.5  # no final horizon: ignored
    with pytest.raises(ConfigError, match=r"t_train_final .* not a whole number of steps"):
        TrainConfig(t_train_final=20.05, t_train_final_epochs=1)
    with pytest.raises(ConfigError, match=r"ema_decay must lie in \(0, 1\)"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="collapse_action must be one of"):
        TrainConfig(collapse_action="ignore")
    cfg = TrainConfig(epochs=5, t_train=5.5, t_train_final=20.0, t_train_final_epochs=2)
    assert [cfg.horizon(e) for e in range(5)] == [5.5, 5.5, 5.5, 20.0, 20.0]


# -- horizon schedule and EMA, across a kill -------------------------------------------------------
def test_horizon_schedule_and_ema_resume_exactly_across_a_kill(tmp_path):
    cfg = TrainConfig(**FAST, t_train_final=6.0, t_train_final_epochs=2, ema_decay=0.9,
                      loss="overlap_ce", loss_mse_weight=1.0)  # fmt: skip
    x, y, patterns, val = _data(cfg)
    straight = train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "a.pt",
                     progress=False)  # fmt: skip
    assert [h["t_train"] for h in straight.history] == [3.0, 3.0, 6.0, 6.0]
    assert {"val_accuracy_raw", "val_accuracy_ema", "weights_ema"} <= set(straight.history[-1])

    def kill(epoch, record, model):
        if epoch == 3:
            raise KeyboardInterrupt  # killed after epoch 3's checkpoint, inside the long horizon

    with pytest.raises(KeyboardInterrupt):
        train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "b.pt", callback=kill,
              progress=False)  # fmt: skip
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 3
    resumed = train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "b.pt",
                    progress=False)  # fmt: skip
    assert straight.history == resumed.history
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for key in ("model", "ema_model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)


def test_the_better_of_raw_and_averaged_weights_is_the_model(tmp_path, monkeypatch):
    cfg = TrainConfig(**FAST, ema_decay=0.5)
    x, y, patterns, val = _data(cfg)
    path = tmp_path / "e.pt"
    result = train(cfg, x, y, patterns, val=val, checkpoint_path=path, progress=False)
    payload = load_checkpoint(path)
    last = result.history[-1]
    expected = "ema" if last["val_accuracy_ema"] >= last["val_accuracy_raw"] else "raw"
    assert payload["weights"] == expected
    assert last["val_accuracy"] == max(last["val_accuracy_ema"], last["val_accuracy_raw"])
    assert not torch.equal(payload["model"]["basis_free"], payload["ema_model"]["basis_free"])
    model, _, _ = load_model(path)
    chosen = payload["ema_model"] if expected == "ema" else payload["model"]
    assert torch.equal(model.basis_free, chosen["basis_free"])
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, chosen[name])
    # the averaged weights keep every planted pattern in the kernel of A
    coupling = model.coupling()
    assert (coupling @ model.patterns.T).abs().max() < 1e-8


def test_train_on_validation_fits_both_splits():
    cfg = TrainConfig(**{**FAST, "epochs": 1}, train_on_validation=True)
    x, y, patterns, val = _data(cfg)
    sizes = []
    train(cfg, x, y, patterns, val=val, progress=False,
          batch_callback=lambda e, b, stats: sizes.append(b))  # fmt: skip
    assert len(sizes) == -(-(len(x) + len(val[0])) // cfg.batch_size)


def test_batch_diagnostics_describe_every_batch():
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    x, y, patterns, _ = _data(cfg)
    seen = []
    train(cfg, x, y, patterns, progress=False, batch_callback=lambda e, b, s: seen.append(s))
    assert len(seen) == -(-len(x) // cfg.batch_size)
    keys = {"loss", "gamma", "eig_on_clip", "states_on_clip", "grad_basis", "grad_eig",
            "grad_gamma", "basis_cond", "coupling_error"}  # fmt: skip
    assert keys == set(seen[0])
    assert all(0 <= s["eig_on_clip"] <= 1 and s["grad_basis"] > 0 for s in seen)
    assert all(s["basis_cond"] >= 1 and s["coupling_error"] == 0 for s in seen)  # A in float64


def test_coupling_diagnostics_measure_the_float32_build_against_float64():
    """basis_cond is Phi's 1-norm condition number; coupling_error the float32 build's relative
    error, which grows with it (a solve loses about cond x float32 rounding)."""
    from sanode.training.train import coupling_diagnostics

    patterns = block_patterns(64, 4)
    model = SANode(patterns, seed=0, dtype=torch.float32, coupling_dtype=torch.float32)
    well = coupling_diagnostics(model)
    cond = torch.linalg.cond(model.basis().detach(), 1)
    assert well["basis_cond"] == pytest.approx(float(cond), rel=1e-9)
    assert 0 < well["coupling_error"] < 1e-5
    with torch.no_grad():  # the reference built from the inverse is the float64 solve's A
        exact, built = model.coupling(torch.float64), model.coupling(torch.float32).double()
        solved = float(torch.linalg.matrix_norm(built - exact) / torch.linalg.matrix_norm(exact))
    assert well["coupling_error"] == pytest.approx(solved, rel=1e-6)
    with torch.no_grad():  # nearly parallel eigenvectors: Phi close to singular
        model.basis_free[:, 1] = model.basis_free[:, 0] + 1e-5 * model.basis_free[:, 1]
    ill = coupling_diagnostics(model)
    assert ill["basis_cond"] > 1e3 * well["basis_cond"]
    assert ill["coupling_error"] > 100 * well["coupling_error"]
    model64 = SANode(patterns, seed=0)
    assert coupling_diagnostics(model64)["coupling_error"] == 0.0


def test_batch_trace_replaces_the_lines_of_a_repeated_epoch(tmp_path):
    """sanode time-to-accuracy --trace-batches: a resumed run drops the lines of the epoch
    the kill interrupted (it is trained again), keeps those of the finished epochs."""
    import json

    from sanode.lab.time_to_accuracy import BatchTrace

    path = tmp_path / "batches.jsonl"
    trace = BatchTrace(path, done=0)
    for epoch, batch in ((1, 1), (1, 2), (2, 1)):  # killed in epoch 2
        trace(epoch, batch, {"loss": 0.1 * batch, "gamma": 0.4})
    resumed = BatchTrace(path, done=1)
    resumed(2, 1, {"loss": 0.5, "gamma": 0.4})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["epoch"], r["batch"]) for r in rows] == [(1, 1), (1, 2), (2, 1)]
    assert rows[-1]["loss"] == 0.5 and rows[0] == {"epoch": 1, "batch": 1, "loss": 0.1,
                                                   "gamma": 0.4}  # fmt: skip


def test_trace_summary_is_one_row_per_epoch(tmp_path):
    from sanode.lab.time_to_accuracy import BatchTrace, trace_summary

    path = tmp_path / "batches.jsonl"
    trace = BatchTrace(path, done=0)
    stats = {"loss": 0.0, "gamma": 0.4, "eig_on_clip": 0.0, "states_on_clip": 0.0,
             "grad_basis": 1.0, "grad_eig": 0.1, "grad_gamma": 0.01}  # fmt: skip
    for epoch, batch, gamma, grad in ((1, 1, 0.4, 1.0), (1, 2, 0.3, 3.0), (1, 3, 0.35, 2.0),
                                      (2, 1, 0.2, 0.0)):  # fmt: skip
        trace(epoch, batch, {**stats, "loss": batch / 10, "gamma": gamma, "grad_basis": grad,
                             "basis_cond": 10.0 * grad,
                             "coupling_error": 1e-6 * batch})  # fmt: skip
    one, two = trace_summary(path)
    assert one["basis_cond_max"] == 30.0 and one["coupling_error_max"] == 3e-6
    assert one["epoch"] == 1 and one["batches"] == 3 and two["batches"] == 1
    assert one["gamma_first"] == 0.4 and one["gamma_min"] == 0.3 and one["gamma_max"] == 0.4
    assert one["grad_basis_median"] == 2.0 and one["grad_basis_max"] == 3.0
    assert one["loss_max"] == 0.3 and abs(one["loss_mean"] - 0.2) < 1e-12
    assert two["grad_basis_max"] == 0.0 and two["gamma_first"] == 0.2


# -- collapse -------------------------------------------------------------------------------------
class _Scripted:
    """Stands in for sanode.training.train.evaluate: validation H follows a script, one value
    a call."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, *args, **kwargs):
        accuracy = self.values.pop(0)

        class Result:
            pass

        result = Result()
        result.accuracy = accuracy
        result.summary = lambda prefix: {f"{prefix}accuracy": accuracy}
        return result


def _weights_by_epoch():
    seen = {}

    def cb(epoch, record, model):
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    return seen, cb


def test_a_collapse_rolls_back_to_the_best_epoch_and_lowers_the_lr(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "sanode.training.train.evaluate", _Scripted([0.8, 0.9, 0.1, 0.2, 0.85, 0.9])
    )
    cfg = TrainConfig(**{**FAST, "epochs": 6}, lr_schedule="onecycle", lr_warmup=0.3)
    x, y, patterns, val = _data(cfg)
    seen, cb = _weights_by_epoch()
    result = train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "r.pt", callback=cb,
                   progress=False)  # fmt: skip
    rollback = result.history[3]
    assert rollback["rollback"] == 2 and rollback["lr_scale"] == 0.5
    assert "rollback" not in result.history[2]  # one low epoch is not a collapse (patience 2)
    for name, tensor in seen[2].items():  # epoch 4 ends on epoch 2's weights
        assert torch.equal(seen[4][name], tensor), name
    payload = load_checkpoint(tmp_path / "r.pt")
    assert payload["lr_scale"] == 0.5 and payload["rollbacks"] == 1
    # the one-cycle schedule goes on to its last step (not rewound to epoch 2), at half the lr
    plain = train(cfg.replace(collapse_fraction=None), x, y, patterns, progress=False)
    lr, plain_lr = ([h["learning_rate"] for h in r.history] for r in (result, plain))
    assert lr[:4] == pytest.approx(plain_lr[:4])  # (epoch 4's record: its lr, before the rollback)
    assert lr[4:] == pytest.approx([0.5 * v for v in plain_lr[4:]])


def test_a_collapse_with_no_rollback_left_stops_with_the_best_epoch_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.7, 0.9, 0.2, 0.1, 0.9]))
    cfg = TrainConfig(**{**FAST, "epochs": 5}, collapse_action="stop")
    x, y, patterns, val = _data(cfg)
    seen, cb = _weights_by_epoch()
    path = tmp_path / "s.pt"
    with pytest.raises(CollapseError, match=r"collapsed in epoch 4: 0\.1000, under 0\.5 x"):
        train(cfg, x, y, patterns, val=val, checkpoint_path=path, callback=cb, progress=False)
    payload = load_checkpoint(path)
    assert payload["epoch"] == 2 and len(payload["history"]) == 2
    for name, tensor in seen[2].items():
        assert torch.equal(payload["model"][name], tensor), name


def test_a_low_start_is_not_a_collapse(monkeypatch):
    """Below collapse_min_best (a model that never trained well) nothing is rolled back."""
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.4, 0.1, 0.1, 0.1]))
    cfg = TrainConfig(**FAST)
    x, y, patterns, val = _data(cfg)
    result = train(cfg, x, y, patterns, val=val, progress=False)
    assert not any("rollback" in h for h in result.history)


def test_a_run_that_never_starts_learning_stops_at_its_stall_check(tmp_path, monkeypatch):
    """stall_epochs: validation H under stall_floor through the first epochs stops the run
    (StallError, a DivergenceError: a Tune trial then fails at once); the checkpoint holds the
    epoch before. A start over the floor in any epoch, or no stall check, goes on."""
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.0, 0.002, 0.003]))
    cfg = TrainConfig(**{**FAST, "epochs": 3}, stall_epochs=2)
    x, y, patterns, val = _data(cfg)
    path = tmp_path / "stall.pt"
    with pytest.raises(StallError, match=r"under 0\.05 for 2 epochs \(best 0\.0020\)"):
        train(cfg, x, y, patterns, val=val, checkpoint_path=path, progress=False)
    assert issubclass(StallError, DivergenceError)
    assert load_checkpoint(path)["epoch"] == 1
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.0, 0.06, 0.0]))
    assert len(train(cfg, x, y, patterns, val=val, progress=False).history) == 3
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.0, 0.0, 0.0]))
    assert len(train(cfg.replace(stall_epochs=None), x, y, patterns, val=val,
                     progress=False).history) == 3  # fmt: skip
    with pytest.raises(ConfigError, match="stall_epochs must be a positive integer"):
        TrainConfig(stall_epochs=0)
    with pytest.raises(ConfigError, match="stall_reseeds 1 needs the stall check"):
        TrainConfig(stall_reseeds=1)
    with pytest.raises(ConfigError, match="stall_reseeds must be >= 0"):
        TrainConfig(stall_epochs=2, stall_reseeds=-1)
    with pytest.raises(ConfigError, match="stall_floor must lie in"):
        TrainConfig(stall_floor=1.5)


def test_a_stalled_run_starts_over_with_the_next_seed_and_resumes_with_it(tmp_path, monkeypatch):
    """stall_reseeds: a stall starts the run over with seed + 1 (the stalled checkpoint and its
    reason kept beside the run's); a run resumed after that continues with seed + 1; all
    reseeds stalled raise StallError; resume=False forgets the stalled seeds."""
    cfg = TrainConfig(**{**FAST, "epochs": 3}, stall_epochs=2, stall_reseeds=2)
    x, y, patterns, val = _data(cfg)
    path = tmp_path / "run.pt"
    # seed 0 stalls at epoch 2; seed 1 learns
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.0, 0.01, 0.5, 0.6, 0.7]))
    result = train(cfg, x, y, patterns, val=val, checkpoint_path=path, progress=False)
    assert result.stalled_seeds == [0]
    assert [h["val_accuracy"] for h in result.history] == [0.5, 0.6, 0.7]
    state = load_checkpoint(path)
    assert state["config"]["seed"] == 1 and state["epoch"] == 3
    assert load_checkpoint(tmp_path / "run.stalled-seed=0.pt")["config"]["seed"] == 0
    assert "under 0.05 for 2 epochs" in (tmp_path / "run.stalled-seed=0.txt").read_text()
    # the same seed-1 run from scratch gives the same weights: the reseed is a plain seed-1 run
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.5, 0.6, 0.7]))
    direct = train(cfg.replace(seed=1), x, y, patterns, val=val, progress=False)
    for a, b in zip(direct.model.parameters(), result.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # resumed (more epochs under a constant schedule would change the schedule: same epochs)
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([]))
    again = train(cfg, x, y, patterns, val=val, checkpoint_path=path, progress=False)
    assert again.stalled_seeds == [0] and len(again.history) == 3
    # every seed stalls: StallError after seeds 0, 1, 2
    monkeypatch.setattr(TRAIN_EVALUATE, _Scripted([0.0] * 6))
    with pytest.raises(StallError):
        train(cfg, x, y, patterns, val=val, checkpoint_path=path, resume=False, progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == [
        "run.stalled-seed=0.txt",
        "run.stalled-seed=1.txt",
    ]
    assert load_checkpoint(path)["config"]["seed"] == 2


# -- random end time ------------------------------------------------------------------------------
def test_random_horizons_are_whole_steps_around_the_horizon_and_reproducible():
    cfg = TrainConfig(**{**FAST, "t_train": 5.5, "epochs": 10}, t_train_jitter=2.0,
                      t_train_final=8.0, t_train_final_epochs=2)  # fmt: skip
    horizons = cfg.batch_horizons(0, 400)
    steps = [t / cfg.dt for t in horizons]
    assert all(abs(s - round(s)) < 1e-9 for s in steps)
    assert min(horizons) >= 3.5 - 1e-9 and max(horizons) <= 7.5 + 1e-9
    assert abs(sum(horizons) / len(horizons) - 5.5) < 0.15 and len(set(horizons)) > 30
    assert horizons == cfg.batch_horizons(0, 400)  # deterministic given the seed and epoch
    assert horizons != cfg.batch_horizons(1, 400)
    assert max(cfg.batch_horizons(9, 50)) > 7.5  # the horizon schedule moves the centre
    fixed = TrainConfig(**FAST)
    assert fixed.batch_horizons(2, 7) == [fixed.t_train] * 7
    with pytest.raises(ConfigError, match=r"t_train_jitter must lie in \[0, 3.0\)"):
        TrainConfig(**FAST, t_train_jitter=3.0)
    with pytest.raises(ConfigError, match="t_train_jitter"):
        TrainConfig(**FAST, t_train_jitter=-0.1)


def _changes_training_and_resumes_exactly_across_a_kill(cfg: TrainConfig, tmp_path) -> None:
    """A lever set in ``cfg`` trains differently from :data:`FAST` alone, and a run killed
    after its second epoch resumes to the same history and weights as a straight run."""
    x, y, patterns, val = _data(cfg)
    straight = train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "a.pt",
                     progress=False)  # fmt: skip
    fixed = train(TrainConfig(**FAST), x, y, patterns, val=val, progress=False)
    assert straight.history[0]["train_loss"] != fixed.history[0]["train_loss"]

    def kill(epoch, record, model):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "b.pt", callback=kill,
              progress=False)  # fmt: skip
    resumed = train(cfg, x, y, patterns, val=val, checkpoint_path=tmp_path / "b.pt",
                    progress=False)  # fmt: skip
    assert straight.history == resumed.history
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_random_horizon_training_resumes_exactly_across_a_kill(tmp_path):
    _changes_training_and_resumes_exactly_across_a_kill(
        TrainConfig(**FAST, t_train_jitter=1.5), tmp_path
    )


# -- random shifts of the training images ---------------------------------------------------------
def test_shift_moves_each_image_by_its_own_offset_and_fills_the_background():
    side, s = 6, 2
    x = torch.rand(300, side * side, generator=torch.Generator().manual_seed(1)) + 1.0
    out = shift_images(x, s, torch.Generator().manual_seed(0), fill=0.0)
    assert out.shape == x.shape and not torch.equal(out, x)
    seen = set()
    for image, moved in zip(x.reshape(-1, side, side), out.reshape(-1, side, side), strict=True):
        # the offset is the one that reproduces the moved image from the original
        matches = []
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                want = torch.zeros(side, side)
                for i in range(side):
                    for j in range(side):
                        if 0 <= i - dy < side and 0 <= j - dx < side:
                            want[i, j] = image[i - dy, j - dx]
                if torch.equal(want, moved):
                    matches.append((dy, dx))
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == (2 * s + 1) ** 2  # every offset occurs in 300 draws
    again = shift_images(x, s, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # deterministic given the generator
    assert torch.equal(shift_images(x, 0, torch.Generator()), x)
    with pytest.raises(ValueError, match="square"):
        shift_images(torch.zeros(2, 10), 1, torch.Generator())
    with pytest.raises(ValueError, match="below the image side"):
        shift_images(x, 6, torch.Generator())


def test_shifted_training_differs_resumes_exactly_and_is_validated(tmp_path):
    _changes_training_and_resumes_exactly_across_a_kill(
        TrainConfig(**FAST, augment_shift=1), tmp_path
    )
    for key in (-1, 5, 1.5, True):
        with pytest.raises(ConfigError, match="augment_shift must be an integer"):
            TrainConfig(**FAST, augment_shift=key)
    one = TrainConfig(**{**FAST, "epochs": 1}, augment_shift=4)
    small = block_patterns(16, 2, 0.5)  # 4 x 4 images: a shift of 4 leaves nothing
    with pytest.raises(ValueError, match="below the image side 4"):
        train(one, torch.rand(8, 16), torch.arange(8) % 2, small, progress=False)
    with pytest.raises(ValueError, match="square"):
        train(one, torch.rand(8, 10), torch.arange(8) % 2, block_patterns(10, 2, 0.5),
              progress=False)  # fmt: skip
