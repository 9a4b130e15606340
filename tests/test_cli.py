import json
from pathlib import Path

import pytest
import torch
import yaml

from sanode.cli import build_parser, main
from sanode.config import CHOICES

from .idx import write_mirror


def test_help_everywhere(capsys):
    for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--eps-train" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--lr", "fast"], "invalid float value"),
        (["train", "--eps-test", "1.5"], "noise levels lie in [0, 1]"),
        (["evaluate", "/nonexistent.pt"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_data_set_is_one_line(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", "--dataset", "cifar", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset cifar: neither a data set name (letters, mnist" in err[0]
    assert not out.exists()


RECIPES = sorted((Path(__file__).parents[1] / "workflow" / "config" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_is_a_valid_training_config(recipe):
    """What `--config workflow/config/recipes/<name>.yaml` trains, every key a setting."""
    from sanode.cli.common import config_from_args

    parser = build_parser()
    args = parser.parse_args(["train", "--config", str(recipe)])
    cfg = config_from_args(args, parser)
    settings = yaml.safe_load(recipe.read_text())
    assert {k: getattr(cfg, k) for k in settings} == settings


def test_the_fast_recipe_is_the_recommended_one_clipped_and_shorter():
    """mnist-fast.yaml differs from mnist-onecycle.yaml only where docs/performance.md says."""
    base, fast = (yaml.safe_load((RECIPES[0].parent / f"mnist-{n}.yaml").read_text())
                  for n in ("onecycle", "fast"))  # fmt: skip
    changed = {k for k in {*base, *fast} if base.get(k) != fast.get(k)}
    assert changed == {"grad_clip_norm", "epochs", "val_per_class", "train_products",
                       "eval_products", "coupling_dtype"}  # fmt: skip


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_word_setting_offers_the_configs_choices(key, capsys):
    """The flags of the settings that take one of a few words list the words config.py
    validates against (one definition), and refuse others before anything runs."""
    flag = "--" + key.replace("_", "-")
    with pytest.raises(SystemExit) as exc:
        main(["train", flag, "no-such-word"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: invalid choice: 'no-such-word'" in err
    assert all(repr(word) in err for word in CHOICES[key])
    for word in CHOICES[key]:  # each listed word parses (the config may still refuse a mix)
        args = build_parser().parse_args(["train", flag, word])
        assert getattr(args, key) == word


def test_train_then_evaluate_letters(tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    code = main(
        [
            "train",
            "--dataset",
            "letters",
            "--letters-copies",
            "20",
            "--epochs",
            "15",
            "--batch-size",
            "25",
            "--lr",
            "0.03",
            "--t-eval",
            "20",
            "--quiet",
            "--out",
            str(ckpt),
            "--eps-test",
            "0.0",
            "0.2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "exact" in out and f"checkpoint: {ckpt}" in out
    assert main(["evaluate", str(ckpt), "--eps-test", "0", "0.5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["eps_test"] for r in rows] == [0.0, 0.5]
    assert rows[0]["accuracy"] == 1.0 and rows[0]["n"] == 100
    assert rows[1]["exact"] + rows[1]["partial"] + rows[1]["wrong"] == 100
    assert (
        main(["evaluate", str(ckpt), "--eps-test", "0", "0.5", "--json", "--early-exit", "1e-4"])
        == 0
    )
    early = json.loads(capsys.readouterr().out)
    for a, b in zip(rows, early, strict=True):
        assert (a["exact"], a["partial"], a["wrong"]) == (b["exact"], b["partial"], b["wrong"])


def test_missing_data_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SANODE_DATA_MIRROR", raising=False)
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--mirror",
            str(tmp_path / "none"),
            "--data-root",
            str(tmp_path / "d"),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("sanode: error: mirror folder") and "Traceback" not in err


def test_train_mnist_from_a_tiny_mirror(tmp_path, capsys):
    write_mirror(tmp_path / "m", n_train=60, n_test=30)
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--mirror",
            str(tmp_path / "m"),
            "--data-root",
            str(tmp_path / "d"),
            "--no-verify-checksums",
            "--epochs",
            "1",
            "--batch-size",
            "30",
            "--t-train",
            "1.0",
            "--t-eval",
            "1.0",
            "--quiet",
            "--out",
            str(tmp_path / "x.pt"),
        ]
    )
    assert code == 0
    assert "wrong" in capsys.readouterr().out


def test_bench_runs_small(capsys, tmp_path):
    code = main(
        [
            "bench",
            "--n",
            "49",
            "--k",
            "5",
            "--batch",
            "8",
            "--steps",
            "5",
            "100",
            "--dtypes",
            "float64",
            "--repeats",
            "1",
            "--no-memory",
            "--eval-batch",
            "16",
            "--eval-steps",
            "300",
            "--out",
            str(tmp_path / "b.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "roofline" in out and "naive" in out
    rows = json.loads((tmp_path / "b.json").read_text())
    variants = [(r["variant"], r["steps"]) for r in rows]
    assert variants == [
        ("naive", 55),
        ("autograd", 5),
        ("sanode", 5),
        ("autograd", 100),
        ("sanode", 100),
        ("sanode-seg", 100),  # checkpointed segments from 100 steps on
        ("eval", 300),
        ("eval-early", 300),
    ]
    assert all(r["image_steps_per_s"] > 0 and r["roofline_fraction"] > 0 for r in rows)
    train = {(r["variant"], r["steps"]): r for r in rows if r["kind"] == "train"}
    # 101 stored states against 10 checkpoints + an 11-state segment (+ a 10-row chunk)
    assert train["sanode-seg", 100]["saved_mib"] < train["sanode", 100]["saved_mib"]
    early = rows[-1]
    assert 0 < early["work_fraction"] < 1 and rows[-2]["work_fraction"] == 1.0


def test_peak_memory_probe_sees_the_stored_states():
    from sanode.lab.bench import peak_training_mib

    # 301 stored (50, 200) float32 states = 11.5 MiB; checkpointed: about 17 + 19 + 18 of them
    kw = dict(n=200, k=4, batch=50, steps=300, dtype=torch.float32, device="cpu", threads=1)
    full = peak_training_mib("sanode", **kw)
    seg = peak_training_mib("sanode-seg", **kw)
    assert 11.0 < full < 200.0
    assert 9.0 < full - seg < 14.0


def test_a_checkpoint_as_config_trains_its_recipe_again(tmp_path, capsys):
    """``--config model.pt`` reads the settings the model was trained with (a search winner's
    recipe from another seed), less where that run executed; flags override it; a file that is
    no checkpoint is one line."""
    from sanode.cli.common import config_from_args
    from sanode.config import EXECUTION_KEYS, PLACE_KEYS, TrainConfig
    from sanode.files import save_checkpoint

    trained = TrainConfig(dataset="mnist", lr=0.0057, batch_size=100, loss="sign_margin",
                          loss_margin=0.8, t_train=8.0, augment_shift=1, seed=0,
                          data_root="/elsewhere/data", mirror="/elsewhere/mirror", threads=2,
                          train_on_validation=True)  # fmt: skip
    ckpt = tmp_path / "winner.pt"
    save_checkpoint(ckpt, {"config": trained.to_dict(), "model": {}})
    parser = build_parser()
    args = parser.parse_args(["train", "--config", str(ckpt), "--seed", "2", "--threads", "1"])
    cfg = config_from_args(args, parser)
    assert cfg.seed == 2 and cfg.threads == 1
    assert cfg.data_root == TrainConfig.data_root and cfg.mirror is None
    assert PLACE_KEYS <= EXECUTION_KEYS  # where a run executed, never what it computes
    same = {k: v for k, v in trained.to_dict().items() if k not in PLACE_KEYS | {"seed"}}
    assert {k: cfg.to_dict()[k] for k in same} == same

    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    for bad in ("other.pt", "missing.pt"):
        with pytest.raises(SystemExit) as exc:
            main(["train", "--config", str(tmp_path / bad), "--quiet"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("sanode train: error: --config ") and str(tmp_path / bad) in err
