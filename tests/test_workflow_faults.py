"""Killing the workflow mid-study (SIGINT, then SIGKILL) and rerunning it loses nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from .workflow_helpers import snakemake, snakemake_cmd, workflow_env, write_config

EPOCHS = 6
EPS_TRAIN = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
CONFIG = {
    "project": {"data_root": "data", "mirror": None, "verify_checksums": True},
    "mlflow": {"tracking_uri": None, "experiment": "faults"},
    "ray": {"address": None, "num_cpus": None, "gpus": 0},
    "studies": {
        "letters": {
            "train": {
                "dataset": "letters",
                "letters_copies": 60,
                "batch_size": 20,
                "epochs": EPOCHS,
                "lr": 0.03,
                "t_train": 40.0,
                "t_eval": 5.0,
            },
            "prepare": {"val_fraction": 0.2},
            "search_space": {"eps_train": EPS_TRAIN, "lr": [0.03]},
            "evaluate": {"eps_test": [0.0], "mse_items": 5},
        }
    },
}


def _results(workdir: Path) -> dict[str, list[dict]]:
    """Per trial folder: the epochs recorded in Ray's result.json."""
    out = {}
    for path in (workdir / "results" / "ray" / "letters").glob("tune-*/*/result.json"):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        out[path.parent.name] = lines
    return out


def _metrics(lines: list[dict]) -> list[dict]:
    """The trainable's own numbers of each reported epoch, without the keys Ray adds (times,
    host, iteration counters)."""
    keys = ("epoch", "train_loss", "gamma", "learning_rate", "val_accuracy")
    return [{k: r.get(k) for k in keys} for r in lines]


def _checkpoints(workdir: Path, trial_folders) -> dict[str, bytes]:
    """The trials' own checkpoints (``trials-<digest>/<number>-<settings>/model.pt``), by Ray
    folder."""
    out = {}
    for folder in trial_folders:
        number = re.search(r"_[0-9a-f]{5}_(\d{5})_", folder).group(1)
        (path,) = (workdir / "results" / "ray" / "letters").glob(f"trials-*/{number}-*/model.pt")
        out[folder] = path.read_bytes()
    return out


def _wait_for_finished_trial(workdir: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(len(v) >= EPOCHS for v in _results(workdir).values()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"workflow ended before the interrupt: {proc.returncode}")
        time.sleep(0.5)
    raise AssertionError("no trial finished in time")


def _kill_orphans(ray_tmp: str) -> None:
    subprocess.run(["pkill", "-9", "-f", ray_tmp], capture_output=True)


@pytest.mark.slow
def test_interrupted_study_resumes_without_recomputing(tmp_path):
    config = write_config(tmp_path / "faults.yaml", CONFIG)
    env = workflow_env(tmp_path)
    cmd = snakemake_cmd(tmp_path, "--cores", "2", "--configfile", str(config))
    with open(tmp_path / "run1.log", "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_finished_trial(tmp_path, proc, timeout=300)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_orphans(env["RAY_TMPDIR"])
    tune_log = (tmp_path / "results" / "logs" / "tune" / "letters.log").read_text()
    # Ctrl-C used to end in "AttributeError: 'NoneType' object has no attribute 'get'"
    assert "AttributeError" not in tune_log and "Traceback" not in tune_log, tune_log[-3000:]
    assert "Rerun the same command to resume" in tune_log or "rerun the same command" in tune_log
    # the terminal: no traceback, not Ray's "Tuner.restore(...)" advice, and the project's
    # line among the last ones (Snakemake's few lines of shutting down follow it)
    terminal = (tmp_path / "run1.log").read_text()
    assert "Traceback" not in terminal and "Tuner.restore(" not in terminal, terminal[-3000:]
    last = terminal.strip().splitlines()[-10:]
    assert any(line.startswith("sanode: ") and "resume" in line for line in last), last
    before = _results(tmp_path)
    done_before = {k: v for k, v in before.items() if len(v) >= EPOCHS}
    assert done_before and not (tmp_path / "results" / "tune" / "letters" / "best.json").exists()
    checkpoints_before = _checkpoints(tmp_path, done_before)

    # second run, killed hard (SIGKILL of the whole process group) once more progress is made
    with open(tmp_path / "run2.log", "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            now = _results(tmp_path)
            if sum(len(v) for v in now.values()) > sum(len(v) for v in before.values()) + 1:
                break
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        _kill_orphans(env["RAY_TMPDIR"])

    unlock = snakemake(tmp_path, "--unlock", "--configfile", str(config), env=env, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    final = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), env=env, timeout=600)
    assert final.returncode == 0, final.stderr[-4000:]

    after = _results(tmp_path)
    # finished trials were not run again: their checkpoints (every epoch's numbers) are
    # untouched. (Ray's own result.json of a trial that reported its last epoch just before
    # the Ctrl-C, but was saved as unfinished, is rewritten by the restore that re-registers
    # it: empty, or holding only the last epoch, which the trainable reports once more from
    # the finished checkpoint without training (sanode.pipeline.tune.trainable); the
    # pipeline's tables come from the checkpoints, never from it.)
    assert _checkpoints(tmp_path, done_before) == checkpoints_before
    for name, lines in done_before.items():
        if len(after[name]) == 1 < len(lines):  # the last epoch, reported again (Ray's own
            assert _metrics(after[name]) == _metrics(lines[-1:]), name  # keys differ)
        else:
            assert after[name] in (lines, []), name
    for lines in after.values():  # an epoch repeated after a kill (reported, then killed
        by_epoch: dict[int, list[dict]] = {}  # before its checkpoint) has identical numbers:
        for r in lines:  # the recomputation is deterministic
            by_epoch.setdefault(r["epoch"], []).append(r)
        for repeats in by_epoch.values():
            assert len({(r["train_loss"], r["val_m_f"]) for r in repeats}) == 1
    trials = pd.read_parquet(tmp_path / "results" / "tables" / "trials.parquet")
    for _, epochs in trials.groupby("trial_id")["epoch"]:  # every epoch, exactly once
        assert sorted(epochs) == list(range(1, EPOCHS + 1))
    assert len(trials) == len(EPS_TRAIN) * EPOCHS  # one row per trial and epoch

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faults")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert any(r.data.tags.get("sanode.closed_as") == "KILLED" for r in runs)
    trial_runs = [r for r in runs if r.data.tags.get("sanode.kind") == "trial"]
    assert len(trial_runs) == len(EPS_TRAIN)  # resumed trials kept their run
    # the restored tuner still has the MLflow callback: resumed trials end FINISHED (a lost
    # callback would leave them as the stale-run sweep marked them, KILLED)
    assert all(r.info.status == "FINISHED" for r in trial_runs), [r.info.status for r in trial_runs]
    for run in trial_runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(set(steps)) == list(range(1, EPOCHS + 1))
