"""The lever ablation (``sanode ablation``): arms at the base run's training work, trained
and tested on tiny data, resumed, rendered."""

from __future__ import annotations

import json

import pytest

from sanode.cli import main
from sanode.config import ConfigError, TrainConfig
from sanode.lab.ablation import ARMS, BASE, arm_config, arms_named, equal_work_epochs, work
from sanode.lab.report import ablation as render_ablation

BASE_CFG = TrainConfig(dataset="mnist", epochs=16, t_train=5.5, dt=0.1)


def test_work_counts_steps_over_the_images_trained_on():
    assert work(BASE_CFG, 900, 100) == pytest.approx(16 * 900 * 55)
    fit = BASE_CFG.replace(train_on_validation=True)
    assert work(fit, 900, 100) == pytest.approx(16 * 1000 * 55)
    final = BASE_CFG.replace(t_train_final=20.0, t_train_final_epochs=2)
    assert work(final, 900, 100) == pytest.approx((14 * 55 + 2 * 200) * 900)


@pytest.mark.parametrize(
    ("changes", "epochs"),
    [
        ({}, 16),
        ({"ema_decay": 0.999}, 16),
        ({"t_train": 8.0}, 11),  # 11 x 8 = 16 x 5.5
        ({"t_train_final": 20.0}, 13),  # 12 x 5.5 + 20 = 86 beside 88; 14 epochs give 91.5
        ({"train_on_validation": True}, 14),  # 14,000 beside 14,400 image-epochs; 15: 15,000
    ],
)
def test_an_arm_gets_the_epochs_of_the_base_runs_work(changes, epochs):
    cfg = BASE_CFG.replace(**changes)
    assert equal_work_epochs(BASE_CFG, cfg, 900, 100) == epochs


def test_every_arm_is_a_valid_config_and_changes_one_lever():
    for arm in ARMS:
        cfg = arm_config(BASE_CFG, arm, 900, 100)
        changed = {k for k, v in cfg.to_dict().items() if BASE_CFG.to_dict()[k] != v}
        assert changed <= {*arm.changes, "epochs"}
    assert arm_config(BASE_CFG, ARMS[0], 900, 100) == BASE_CFG


def test_arms_are_named_base_first_and_an_unknown_one_is_refused():
    assert [a.name for a in arms_named(["shift1", "base", "shift1"])] == [BASE, "shift1"]
    assert [a.name for a in arms_named(None)] == [a.name for a in ARMS]
    with pytest.raises(ConfigError, match=r"unknown ablation arm.*'nope'.*known: \['base'"):
        arms_named(["nope"])


def test_ablation_trains_each_arm_resumes_and_renders(tmp_path, capsys):
    out, table = tmp_path / "abl", tmp_path / "results" / "letters.json"
    argv = ["ablation", "--dataset", "letters", "--letters-copies", "10", "--batch-size", "25",
            "--epochs", "2", "--lr", "0.03", "--t-train", "5.5", "--t-eval", "20",
            "--t-test", "20", "--eig-mean", "-2", "--arms", "t_train8", "--out", str(out),
            "--result", str(table), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "base:   2 epochs" in text and "t_train8:   1 epochs" in text
    summary = json.loads(table.read_text())
    assert summary == json.loads((out / "ablation.json").read_text())
    base, arm = summary["rows"]
    assert (base["arm"], arm["arm"], arm["epochs"]) == (BASE, "t_train8", 1)
    assert "delta_test_points" not in base
    assert arm["delta_test_points"] == pytest.approx(
        100 * (arm["test_accuracy"] - base["test_accuracy"])
    )
    assert arm["wall_ratio"] == pytest.approx(arm["train_wall_s"] / base["train_wall_s"])
    assert arm["exact"] + arm["partial"] + arm["wrong"] == 50  # the letters test set
    assert summary["configs"]["t_train8"]["t_train"] == 8.0
    # a rerun reads the finished arms back: nothing retrained
    walls = (base["train_wall_s"], arm["train_wall_s"])
    assert main(argv) == 0
    again = json.loads(table.read_text())["rows"]
    assert (again[0]["train_wall_s"], again[1]["train_wall_s"]) == walls
    # the table renders with each arm's change against the base
    rendered = render_ablation(tmp_path, ["results/letters.json"])
    assert "| letters | `base` | the base recipe | 2 |" in rendered
    assert f"{arm['delta_test_points']:+.2f}" in rendered and "(" in rendered.splitlines()[-1]
    # other settings for a finished arm: refused, with how to rerun it
    assert main([*argv[:-1], "--lr", "0.02", "--quiet"]) == 2
    assert "delete" in capsys.readouterr().err


def test_an_ablation_without_its_base_arm_first_is_refused(tmp_path):
    from sanode.lab.ablation import run_ablation

    with pytest.raises(ValueError, match="first arm must be 'base'"):
        run_ablation(BASE_CFG, tmp_path, arms=[ARMS[1]])
