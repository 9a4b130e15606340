"""Every bad input gets one line: evaluation horizons, the config check from any folder, empty
search grids, the commands' own usage, files that are no checkpoint, and help on every flag."""

from __future__ import annotations

import argparse
import os

import pytest
import yaml

from sanode.cli import build_parser, main

from .workflow_helpers import ROOT, load_config


def _write(path, config) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    "t_eval, message",
    [
        (0.05, "studies.mnist.evaluate.t_eval: 0.05 is shorter than one step of the study's dt"),
        (10.05, "studies.mnist.evaluate.t_eval: 10.05 is not a whole number of steps of the "
                "study's dt (0.1): 100.5 steps; use 10 or 10.1"),
    ],
)  # fmt: skip
def test_an_evaluate_horizon_that_does_not_fit_dt_is_refused(tmp_path, capsys, t_eval, message):
    config = load_config("smoke")
    config["studies"]["mnist"]["evaluate"]["t_eval"] = t_eval
    assert main(["check-config", _write(tmp_path / "c.yaml", config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_config_check_uses_the_schema_from_any_folder(tmp_path, capsys, monkeypatch):
    config = load_config("smoke")
    config["bogus"] = 1
    path = _write(tmp_path / "c.yaml", config)
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert main(["check-config", path]) == 2
    assert "unknown key(s) ['bogus']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", "--schema", str(tmp_path / "none.yaml"), path])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sanode check-config" in err  # the command's usage, not the top level's
    assert f"the schema {tmp_path / 'none.yaml'} does not exist" in err
    assert os.path.isfile(ROOT / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("project: {data_root: data\nstudies: [\n", "line 2: not valid YAML"),
        ("", "must hold a mapping (project, studies, ...)"),
        ("- 1\n", "must hold a mapping (project, studies, ...)"),
        (None, "does not exist"),
    ],
)
def test_a_config_file_snakemake_cannot_read_is_named_with_its_line(
    tmp_path, capsys, text, message
):
    """Snakemake reads ``--configfile`` before the Snakefile runs (its message names neither
    file nor line, a missing file is a traceback): the config check, which ``make`` runs
    first, names the file (and the line)."""
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"sanode check-config: error: config {path}") and message in err[-1]


def test_an_empty_search_grid_says_so(tmp_path, capsys):
    config = load_config("smoke")
    config["studies"]["letters"]["search_space"]["lr"] = []
    assert main(["check-config", _write(tmp_path / "c.yaml", config)]) == 2
    err = capsys.readouterr().err
    assert "studies.letters.search_space.lr: an empty grid; list at least one value" in err
    assert "is not valid under any of the given schemas" not in err


def test_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, what in ((text, "it is a text file of 12 bytes (starts 'hello world')"),
                       (empty, "it is an empty file")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["evaluate", str(path)])
        err = capsys.readouterr().err
        assert "usage: sanode evaluate" in err and what in err
        assert "pass a .pt file written by sanode train" in err


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {' '.join(action.option_strings) or action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction)
        and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]
    assert missing == []
    train = sub.choices["train"].format_help()
    assert "--t-train T_TRAIN" in train and "training horizon T" in train


def test_a_changed_setting_on_resume_names_the_flag(tmp_path, capsys):
    argv = ["train", "--dataset", "letters", "--letters-copies", "5", "--epochs", "1",
            "--batch-size", "25", "--quiet", "--out", str(tmp_path / "m.pt")]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "different settings ['lr']" in err and "--no-resume" in err
