import itertools

import pytest
import torch

from sanode.config import ConfigError, TrainConfig
from sanode.data.datasets import load_split
from sanode.training.checkpoint import load_checkpoint, load_model
from sanode.training.evaluate import evaluate
from sanode.training.train import DivergenceError, epoch_batches, train

FAST = dict(
    dataset="letters",
    letters_copies=20,
    batch_size=25,
    lr=3e-2,
    t_train=5.5,
    t_eval=20.0,
    epochs=15,
    seed=0,
)


def _data(cfg):
    split = load_split(cfg, "train")
    return split.x, split.y, split.patterns


def test_letters_training_reaches_full_accuracy():
    cfg = TrainConfig(**FAST)
    x, y, patterns = _data(cfg)
    result = train(cfg, x, y, patterns, progress=False)
    test = load_split(cfg, "test", letters_eps=0.0)
    ev = evaluate(result.model, test.x, test.y, t_end=cfg.t_eval, dt=cfg.dt)
    assert ev.accuracy == 1.0
    assert ev.buckets.exact == len(test.y)
    assert ev.nearest_accuracy == 1.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 10
    assert result.model.stability_report()["max_real_jacobian_eig"] < 0


def test_resume_equals_uninterrupted_run(tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 4, "eps_train": 0.2})
    x, y, patterns = _data(cfg)
    straight = train(cfg, x, y, patterns, checkpoint_path=tmp_path / "a.pt", progress=False)
    half = cfg.replace(epochs=2)
    train(half, x, y, patterns, checkpoint_path=tmp_path / "b.pt", progress=False)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 2
    resumed = train(cfg, x, y, patterns, checkpoint_path=tmp_path / "b.pt", progress=False)
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert straight.history == resumed.history
    model, saved_cfg, payload = load_model(tmp_path / "b.pt")
    assert saved_cfg == cfg and payload["epoch"] == 4
    assert torch.equal(model.coupling(), resumed.model.coupling())
    # the wall of every epoch run and the machine it ran on, kept across the resume
    times = payload["epoch_times"]
    assert [t["epoch"] for t in times] == [1, 2, 3, 4]
    assert all(t["seconds"] > 0 and t["cpu"] and t["threads"] >= 1 for t in times)


def test_a_finished_checkpoint_can_keep_its_weights_only(tmp_path):
    """What the pipeline keeps of a finished trial: evaluation and resuming read it as before;
    an unfinished run's checkpoint, or going on past the epochs it holds, is refused."""
    from sanode.training.checkpoint import CONTINUE_KEYS, keep_weights_only

    cfg = TrainConfig(**{**FAST, "epochs": 2, "ema_decay": 0.9})
    x, y, patterns = _data(cfg)
    path = tmp_path / "d.pt"
    first = train(cfg, x, y, patterns, checkpoint_path=path, progress=False)
    size, (model, _, payload) = path.stat().st_size, load_model(path)
    assert keep_weights_only(path) and not keep_weights_only(path)  # once
    assert path.stat().st_size < size
    assert not set(CONTINUE_KEYS) & set(load_checkpoint(path))
    slim, saved_cfg, slim_payload = load_model(path)
    assert saved_cfg == cfg and slim_payload["history"] == first.history
    assert slim_payload["epoch_times"] == payload["epoch_times"]
    assert slim_payload["weights"] == payload["weights"]
    assert torch.equal(slim.coupling(), model.coupling())
    again = train(cfg, x, y, patterns, checkpoint_path=path, progress=False)  # nothing to train
    assert again.history == first.history
    assert torch.equal(again.model.coupling(), first.model.coupling())
    with pytest.raises(ValueError, match="without the optimiser state"):
        train(cfg.replace(epochs=3), x, y, patterns, checkpoint_path=path, progress=False)
    stopped = tmp_path / "e.pt"
    train(cfg, x, y, patterns, checkpoint_path=stopped, progress=False, callback=lambda *a: True)
    with pytest.raises(ValueError, match="holds epoch 1 of 2"):
        keep_weights_only(stopped)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    x, y, patterns = _data(cfg)
    train(cfg, x, y, patterns, checkpoint_path=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match=r"different settings \['lr'\]"):
        train(
            cfg.replace(lr=1e-3), x, y, patterns, checkpoint_path=tmp_path / "c.pt", progress=False
        )


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 1, "clip": None})
    x, y, patterns = _data(cfg)
    path = tmp_path / "d.pt"
    train(cfg, x, y, patterns, checkpoint_path=path, progress=False)
    before = path.read_bytes()
    # a huge step makes the cubic term overflow to inf/nan at once
    bad = cfg.replace(epochs=2)
    x_bad = x * 1e20
    with pytest.raises(DivergenceError, match="loss became"):
        train(bad, x_bad, y, patterns, checkpoint_path=path, progress=False)
    assert path.read_bytes() == before


def test_a_model_that_stopped_learning_stops_training(tmp_path):
    """States pinned at the state clip pass no gradient: the loss stays finite and flat, so
    only the zero gradient tells; training stops with one line instead of running on."""
    cfg = TrainConfig(**{**FAST, "epochs": 3})
    x, y, patterns = _data(cfg)
    with pytest.raises(DivergenceError, match="every gradient was zero in epoch 1"):
        train(cfg, x * 1e3, y, patterns, checkpoint_path=tmp_path / "s.pt", progress=False)
    assert not (tmp_path / "s.pt").exists()  # nothing worth keeping was written


def test_callback_sees_every_epoch_and_can_stop():
    cfg = TrainConfig(**{**FAST, "epochs": 5})
    x, y, patterns = _data(cfg)
    seen = []
    test = load_split(cfg, "test")

    def cb(epoch, record, model):
        seen.append((epoch, set(record)))
        return epoch == 3

    result = train(cfg, x, y, patterns, val=(test.x, test.y), callback=cb, progress=False)
    assert [e for e, _ in seen] == [1, 2, 3] and result.stopped_early
    assert {"train_loss", "val_accuracy", "val_exact", "val_nearest_accuracy"} <= seen[0][1]


def test_config_errors_name_key_and_choices():
    with pytest.raises(ConfigError, match="EMNIST has the splits"):
        TrainConfig(dataset="emnist-cifar")  # another name is a path, read when loaded
    with pytest.raises(ConfigError, match="dataset must be a name"):
        TrainConfig(dataset="")
    with pytest.raises(ConfigError, match=r"unknown training setting\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="eps_train must lie in"):
        TrainConfig(eps_train=2.0)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="grad_segment must be null"):
        TrainConfig(grad_segment="sqrt")
    with pytest.raises(ConfigError, match="matmul_precision must be one of"):
        TrainConfig(matmul_precision="tf32")


def test_memory_and_precision_settings_train_the_same_model(tmp_path):
    """grad_segment only trades memory for recomputation; on a CPU without bf16 matmuls,
    'high' precision runs the same float32 products. A checkpoint resumes across grad_segment."""
    cfg = TrainConfig(**{**FAST, "epochs": 2})
    x, y, patterns = _data(cfg)
    ref = train(cfg, x, y, patterns, progress=False)
    seg = train(cfg.replace(grad_segment=7), x, y, patterns, progress=False)
    for p, q in zip(ref.model.parameters(), seg.model.parameters(), strict=True):
        assert ((p - q).norm() / p.norm()).item() < 1e-5  # float32 rounding through 2 epochs
    seen = []
    cb = lambda epoch, record, model: seen.append(torch.get_float32_matmul_precision())  # noqa: E731
    train(cfg.replace(matmul_precision="high", epochs=1), x, y, patterns, progress=False,
          callback=cb)  # fmt: skip
    assert seen == ["high"] and torch.get_float32_matmul_precision() == "highest"
    train(cfg.replace(epochs=1), x, y, patterns, checkpoint_path=tmp_path / "s.pt", progress=False)
    resumed = train(cfg.replace(grad_segment="auto"), x, y, patterns,
                    checkpoint_path=tmp_path / "s.pt", progress=False)  # fmt: skip
    assert len(resumed.history) == 2


@pytest.mark.parametrize(("n", "bs"), [(54_001, 200), (100, 25), (7, 10), (1, 1), (26, 25)])
def test_epoch_batches_are_nearly_equal_and_cover_every_item(n, bs):
    bounds = epoch_batches(n, bs)
    sizes = [stop - start for start, stop in bounds]
    assert len(bounds) == -(-n // bs)  # ceil: the schedule's steps per epoch
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= bs
    if n % bs == 0:
        assert sizes == [bs] * (n // bs)  # divisible: the plain slices
    with pytest.raises(ValueError, match="batch_size >= 1"):
        epoch_batches(n, 0)


def test_training_never_takes_a_step_on_a_remainder_batch(monkeypatch):
    """26 items in batches of 25 used to end every epoch with a one-item batch."""
    from sanode.core.model import SANode

    sizes = []
    forward = SANode.forward

    def spy(self, x0, *args, **kwargs):
        sizes.append(len(x0))
        return forward(self, x0, *args, **kwargs)

    monkeypatch.setattr(SANode, "forward", spy)
    cfg = TrainConfig(dataset="letters", letters_copies=6, batch_size=25, epochs=2, lr=1e-2)
    split = load_split(cfg, "train")
    x, y = split.x[:26], split.y[:26]
    train(cfg, x, y, split.patterns, progress=False)
    assert sizes == [13, 13, 13, 13]


def test_one_bucket_summary_feeds_logs_tables_and_results():
    from sanode.training.evaluate import RECORD_KEYS, SUMMARY_KEYS

    cfg = TrainConfig(**{**FAST, "epochs": 1})
    x, y, patterns = _data(cfg)
    model = train(cfg, x, y, patterns, progress=False).model
    res = evaluate(model, x, y, t_end=cfg.t_eval, dt=cfg.dt)
    record = res.record()
    assert tuple(record) == RECORD_KEYS
    assert record["exact"] + record["partial"] + record["wrong"] == record["n"] == len(y)
    assert record["accuracy"] == (record["exact"] + record["partial"]) / record["n"]
    assert res.summary("val_") == {f"val_{k}": record[k] for k in SUMMARY_KEYS}
    assert res.record(("mse", "n")) == {"mse": record["mse"], "n": record["n"]}
