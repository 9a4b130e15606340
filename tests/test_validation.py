"""One validation pass: types, ranges, relations and search spaces, one line per problem."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sanode.cli import main
from sanode.config import ConfigError, TrainConfig
from sanode.pipeline.tracking import TrackingStoreError, check_store
from sanode.pipeline.validate import config_problems, validate_config

from .workflow_helpers import ROOT, load_config

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gamma", "abc", "gamma must be a number, got 'abc'"),
        ("eig_mean", "-5", "eig_mean must be a number, got '-5' (str)"),
        ("margin", "x", "margin must be a number"),
        ("clip", "big", "clip must be a number or null"),
        ("per_class", "6", "per_class must be an integer or null, got '6'"),
        ("dt", 6.0, "dt (6.0) is larger than t_train (5.5)"),
        ("dt", 0.06, "t_train (5.5) is not a whole number of steps dt (0.06)"),
        ("verify_checksums", "yes", "verify_checksums must be true or false"),
    ],
)
def test_training_settings_fail_early_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{key: value})
    assert message in str(err.value)


def test_training_settings_are_a_settings_block_of_one_type_check():
    """TrainConfig derives from the pipeline blocks' base: the same check and messages, but
    its values stay as given (an integer lr stays an integer, so no digest moves)."""
    from sanode.pipeline.settings import EvaluateSettings
    from sanode.typecheck import Settings

    assert issubclass(TrainConfig, Settings) and issubclass(EvaluateSettings, Settings)
    cfg = TrainConfig.from_mapping({"lr": 1, "epochs": 3})
    assert cfg.lr == 1 and type(cfg.lr) is int and cfg == TrainConfig(lr=1, epochs=3)
    assert cfg.to_dict() == {**TrainConfig().to_dict(), "lr": 1, "epochs": 3}
    assert EvaluateSettings.from_mapping({"t_eval": 2}).t_eval == 2.0  # blocks convert
    with pytest.raises(ConfigError, match=r"^epochs must be an integer, got 1.5 \(float\)$"):
        TrainConfig.from_mapping({"epochs": 1.5})
    with pytest.raises(ConfigError, match=r"^evaluate.mse_items must be an integer, got 'a'"):
        EvaluateSettings(mse_items="a")  # direct construction is checked too


def _config():
    return load_config("smoke")


@pytest.mark.parametrize(
    "change, line",
    [
        (
            lambda c: c["studies"]["letters"]["search_space"].update(eps_train=[0.0, 1.5]),
            "studies.letters.search_space.eps_train: grid value 1.5 is not a valid setting: "
            "eps_train must lie in [0, 1]",
        ),
        (
            lambda c: c["studies"]["letters"]["search_space"].update(lr=[0]),
            "studies.letters.search_space.lr: grid value 0 is not a valid setting",
        ),
        (
            lambda c: c["studies"]["letters"]["search_space"].update(epochs=[0]),
            "studies.letters.search_space.epochs: grid value 0 is not a valid setting",
        ),
        (
            lambda c: c["studies"]["letters"]["search_space"].update(
                lr={"loguniform": [0.1, 1e-3]}
            ),
            "studies.letters.search_space.lr: loguniform bounds [0.1, 0.001] are reversed",
        ),
        (
            lambda c: c["studies"]["letters"]["search_space"].update(gamma={"uniform": [0.1, "x"]}),
            "studies.letters.search_space.gamma: {'uniform': [0.1, 'x']} is not valid",
        ),
        (
            lambda c: c["studies"]["letters"]["train"].update(gamma="abc"),
            "studies.letters.train: gamma must be a number, got 'abc'",
        ),
        (
            lambda c: c["studies"]["letters"]["train"].update(dt=0.3),
            "studies.letters.train: t_eval (10.0) is not a whole number of steps dt (0.3)",
        ),
        (
            lambda c: c["studies"]["letters"]["evaluate"].update(colour=1),
            "studies.letters.evaluate: unknown key(s) ['colour']; allowed keys:",
        ),
    ],
)
def test_pipeline_config_problems_are_one_line_each(change, line):
    config = _config()
    change(config)
    problems = config_problems(config, schema=SCHEMA)
    assert any(p.startswith(line) for p in problems), problems
    assert all("\n" not in p and len(p) < 600 for p in problems)  # no schema dumps
    with pytest.raises(ConfigError) as err:
        validate_config(config, schema=SCHEMA, source="bad.yaml")
    assert str(err.value).startswith("bad.yaml: ")


def test_every_problem_is_reported_at_once():
    config = _config()
    config["studies"]["letters"]["search_space"]["eps_train"] = [0.0, 1.5]
    config["studies"]["mnist"]["search_space"]["lr"] = [0]
    problems = config_problems(config, schema=SCHEMA)
    assert len(problems) == 2 and {p.split(":")[0] for p in problems} == {
        "studies.letters.search_space.eps_train",
        "studies.mnist.search_space.lr",
    }


def test_shipped_configs_are_valid():
    for name in ("smoke", "default", "paper", "long", "search"):
        assert config_problems(load_config(name), schema=SCHEMA) == [], name


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\nepochs: 2\n")
    with pytest.raises(SystemExit) as code:
        main(["train", "--config", str(bad)])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert f"--config {bad} line" in err and "not valid YAML" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("gamma: abc\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(wrong)])
    assert f"{wrong}: gamma must be a number" in capsys.readouterr().err


def test_evaluate_refuses_bad_options_and_diverged_checkpoints(tmp_path, capsys):
    import torch

    from sanode.core.model import SANode
    from sanode.core.patterns import block_patterns
    from sanode.training.checkpoint import save_checkpoint

    model = SANode(block_patterns(49, 5, 0.5))
    cfg = TrainConfig(letters_copies=2, epochs=1)
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1,
                           "history": []})  # fmt: skip
    for argv, message in (
        (["--early-exit", "0"], "--early-exit must be a tolerance > 0"),
        (["--dt", "100"], "dt (100.0) is larger than t_eval"),
    ):
        with pytest.raises(SystemExit):
            main(["evaluate", str(path), *argv])
        assert message in capsys.readouterr().err
    state = model.state_dict()
    state["eig_free"] = torch.full_like(state["eig_free"], float("nan"))
    save_checkpoint(path, {"model": state, "config": cfg.to_dict(), "epoch": 1, "history": []})
    with pytest.raises(SystemExit):
        main(["evaluate", str(path)])
    assert "non-finite parameters ['eig_free']" in capsys.readouterr().err


def test_divergence_is_exit_1_with_one_line(tmp_path, capsys):
    """`sanode train --dataset letters --lr 10 ...` used to exit 0 with a garbage model."""
    argv = ["train", "--dataset", "letters", "--lr", "10", "--epochs", "3", "--letters-copies",
            "5", "--batch-size", "5", "--out", str(tmp_path / "d.pt"), "--quiet"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "sanode: training diverged:" in err and "Traceback" not in err


def test_unusable_mlflow_store_fails_in_seconds(tmp_path):
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    for uri, message in (
        (missing, "does not exist"),
        (f"sqlite:///{garbage}", "file is not a database"),
        (f"sqlite:///{folder}", "unable to open database file"),
        ("http://127.0.0.1:9", "is not reachable"),
    ):
        start = time.monotonic()
        with pytest.raises(TrackingStoreError) as err:
            check_store(uri, timeout=3)
        assert time.monotonic() - start < 10
        assert uri in str(err.value) and message in str(err.value)
        assert "MLFLOW_TRACKING_URI" in str(err.value)  # says what to change
    check_store(f"sqlite:///{tmp_path / 'ok.db'}")  # a new store in a writable folder is fine
    assert Path(tmp_path / "ok.db").exists()


def test_check_config_names_file_and_line(tmp_path, capsys):
    """A YAML syntax error in a pipeline config used to be Snakemake's "Config file is not
    valid JSON or YAML" without the file; `make study` checks the file first."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: {data_root: data\nstudies: [\n")
    with pytest.raises(SystemExit):
        main(["check-config", str(bad), "--schema", str(SCHEMA)])
    assert f"config {bad} line" in capsys.readouterr().err
    config = load_config("smoke")
    config["studies"]["letters"]["search_space"]["lr"] = [0]
    import yaml

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(wrong), "--schema", str(SCHEMA)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{wrong}: studies.letters.search_space.lr: grid value 0")
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(load_config("smoke")))
    assert main(["check-config", str(ok), "--schema", str(SCHEMA)]) == 0


def _retrain(**spec):
    config = load_config("smoke")
    config["studies"]["mnist_winner"].update(spec)
    return config


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ({"winner_of": "cifar"}, "studies.mnist_winner.winner_of: 'cifar' is not another study"),
        ({"winner_of": "mnist_winner"}, "'mnist_winner' is not another study"),
        ({"winner_of": "letters"}, "'letters' searched 'letters', not this study's 'mnist'"),
        ({"search_space": {"lr": [0.1, 0.2]}}, "a retrain searches nothing but seeds; move ['lr']"),
    ],
)
def test_a_retrain_names_another_study_of_its_data_set(spec, line):
    problems = config_problems(_retrain(**spec))
    assert len(problems) == 1 and line in problems[0], problems


def test_a_retrain_of_a_retrain_is_refused():
    config = _retrain()
    config["studies"]["again"] = {**config["studies"]["mnist_winner"], "winner_of": "mnist_winner"}
    assert config_problems(config) == [
        "studies.again.winner_of: 'mnist_winner' retrains a winner itself; name the searched "
        "study 'mnist' instead"
    ]


def test_a_retrain_takes_the_winners_searched_settings_but_noise_and_seed():
    from sanode.pipeline.study import study_digest, winner_settings

    best = {"models": {"0": {"params": {"lr": 0.01, "seed": 3, "eps_train": 0.3, "loss": "mse"}}}}
    assert winner_settings(best) == {"lr": 0.01, "loss": "mse"}
    with pytest.raises(ConfigError, match="holds no model"):
        winner_settings({"models": {}})
    # a null choice of the search space (ema_decay: [null, 0.999]) is NaN in the trials table
    # and None again in best.json, so that the retrain's TrainConfig takes it
    import pandas as pd

    from sanode.pipeline.selection import plain_value

    column = pd.Series([None, 0.999], dtype="float64")
    assert plain_value(column[0]) is None and plain_value(column[1]) == 0.999
    # a change of the searched study reruns its retrain
    config = load_config("smoke")
    before = study_digest(config, "mnist_winner")
    config["studies"]["mnist"]["search_space"]["lr"] = [0.003, 0.02]
    assert study_digest(config, "mnist_winner") != before
