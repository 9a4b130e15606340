"""Ray Tune studies: failed trials, MLflow records, and a study against a real Ray cluster."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from sanode.config import TrainConfig
from sanode.data.prepare import prepare_dataset
from sanode.pipeline.study import StudySettings
from sanode.pipeline.tune import run_study

from .ray_helpers import stop_ray

BASE = dict(
    dataset="letters", letters_copies=8, batch_size=20, lr=0.03, t_train=3.0, t_eval=5.0, epochs=2
)


def _prepare(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "letters.pt"
    prepare_dataset(TrainConfig(**BASE), path, val_fraction=0.25)
    return path


def _runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_diverging_trial_is_failed_and_study_completes(tmp_path, ray_env):
    data = _prepare(tmp_path)
    settings = StudySettings(
        name="letters",
        base={**BASE, "clip": None, "t_train": 30.0, "t_eval": 6.0},
        search_space={"dt": [0.1, 3.0]},  # dt = 3 makes the cubic term blow up to inf
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = run_study(
        settings,
        data_path=data,
        out_dir=tmp_path / "out",
        storage_dir=tmp_path / "ray",
        tracking_uri=uri,
        experiment="t",
        num_cpus=2,
        project_root=tmp_path,
    )
    status = table.groupby("trial_id")["status"].first()
    assert sorted(status) == ["ERROR", "TERMINATED"]
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["models"]["0"]["params"]["dt"] == 0.1
    assert len(best["failed_trials"]) == 1
    # restarted (max_failures) but not retrained: the first attempt recorded its divergence
    (record,) = (tmp_path / "ray").glob("trials-*/*/diverged.txt")
    assert "loss became" in record.read_text() or "diverg" in record.read_text()
    (error,) = (tmp_path / "ray").glob("tune-*/*/error.txt")
    assert "recorded by an earlier attempt" in error.read_text()
    assert (tmp_path / "out" / "best" / "eps_train=0.pt").is_file()
    client, runs = _runs(uri, "t")
    by_kind = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get("sanode.kind"), []).append(r)
    assert [r.info.status for r in by_kind["tune"]] == ["FINISHED"]
    assert sorted(r.info.status for r in by_kind["trial"]) == ["FAILED", "FINISHED"]
    finished = next(r for r in by_kind["trial"] if r.info.status == "FINISHED")
    assert {a.path for a in client.list_artifacts(finished.info.run_id)} == {"checkpoint"}
    frame = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert set(frame["mlflow_run_id"]) == {r.info.run_id for r in by_kind["trial"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_study_on_a_ray_cluster(tmp_path, ray_env):
    data = _prepare(tmp_path)
    port = _free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_TMPDIR": ray_env}
    start = subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        settings = StudySettings(name="letters", base=BASE, search_space={"lr": [0.03, 0.01]})
        table = run_study(
            settings,
            data_path=data,
            out_dir=tmp_path / "out",
            storage_dir=tmp_path / "ray",
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            ray_address=f"127.0.0.1:{port}",
            project_root=tmp_path,
        )
    finally:
        stop_ray(ray_env)  # this test's Ray only: `ray stop --force` stops every Ray here
    assert sorted(table.groupby("trial_id")["status"].first()) == ["TERMINATED", "TERMINATED"]
    assert set(table["epoch"]) == {1, 2}


def test_study_settings_and_search_space_are_checked():
    from sanode.pipeline.tune import _param_space
    from sanode.pipeline.tune_outputs import _trial_id_from_path

    with pytest.raises(ValueError, match=r"search_space.learning_rate: unknown setting"):
        StudySettings(name="x", base=BASE, search_space={"learning_rate": [1.0]})
    with pytest.raises(ValueError, match="unknown sampler 'normal'"):
        _param_space({"lr": {"normal": [0, 1]}})
    settings = StudySettings(name="x", base=BASE, search_space={"eps_train": [0.0, 0.5]})
    assert settings.eps_train_grid() == [0.0, 0.5]
    assert StudySettings(name="x", base=BASE, search_space={}).eps_train_grid() == [0.0]
    assert _trial_id_from_path("/r/trainable_6bf0a_00003_3_lr=0.01_2026-11-28_17-44-55") == (
        "6bf0a_00003"
    )


@pytest.mark.slow
def test_local_ray_refuses_clients_without_the_runs_token(tmp_path, ray_env):
    """The embedded single-machine Ray listens beyond loopback (Ray 2.60 cannot bind it to
    127.0.0.1); every request must carry the run's random token, so no one else can use it."""
    import ray

    from sanode.pipeline.tune import ray_session

    with ray_session(None, 1, tmp_path):
        address = ray.get_runtime_context().gcs_address
        code = f"import ray; ray.init(address={address!r}); print('CONNECTED')"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        refused = []
        for auth in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token",
                                                     "RAY_AUTH_TOKEN": "0" * 64}):  # fmt: skip
            res = subprocess.run([sys.executable, "-c", code], env={**env, **auth},
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
            refused.append(res.returncode != 0 and "CONNECTED" not in res.stdout)
            assert "Authentication token is missing or incorrect" in res.stderr, res.stderr[-2000:]
        assert refused == [True, True]
        ok = subprocess.run([sys.executable, "-c", code], env={**os.environ},
                            capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "CONNECTED" in ok.stdout, ok.stderr[-2000:]  # the run's own token works
    assert not ray.is_initialized() and os.environ["RAY_AUTH_MODE"] == "disabled"


@pytest.mark.slow
def test_asha_stopped_trials_keep_their_last_epoch(tmp_path, ray_env):
    """ASHA stops a trial at tune.report; the epoch it reported used to be lost from the
    checkpoint (best model one epoch behind MLflow, trials table missing epochs)."""
    data = _prepare(tmp_path)
    settings = StudySettings(
        name="letters",
        base={**BASE, "epochs": 4},
        search_space={"lr": [0.03, 0.003, 0.0003, 0.00003]},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
        metric="train_loss",  # continuous: no ties at ASHA's rungs
        mode="min",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = dict(data_path=data, out_dir=tmp_path / "out", storage_dir=tmp_path / "ray",
              tracking_uri=uri, experiment="t", num_cpus=2, project_root=tmp_path)  # fmt: skip
    table = run_study(settings, **kw)
    last = table.groupby("trial_id")["epoch"].max()
    assert last.min() < 4, "ASHA stopped no trial early; the test needs a stopped one"
    client = MlflowClient(tracking_uri=uri)
    for trial_id, rows in table.groupby("trial_id"):
        from sanode.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(rows["checkpoint"].iloc[0])
        assert ckpt["epoch"] == last[trial_id]  # the stopping epoch is in the checkpoint
        assert sorted(rows["epoch"]) == list(range(1, last[trial_id] + 1))
        steps = [m.step for m in client.get_metric_history(rows["mlflow_run_id"].iloc[0],
                                                           "val_accuracy")]  # fmt: skip
        assert sorted(steps) == sorted(rows["epoch"])  # MLflow and the table agree
    best = json.loads((tmp_path / "out" / "best.json").read_text())["models"]["0"]
    model_epoch = load_checkpoint(best["checkpoint"])["epoch"]
    assert best["selected_epoch"] == model_epoch == last[best["trial_id"]]
    # the experiment folder is named by the settings: a changed search space starts afresh
    assert (tmp_path / "ray" / f"tune-{settings.digest()}").is_dir()
    other = StudySettings(name="letters", base={**BASE, "epochs": 4},
                          search_space={"lr": [0.03]})  # fmt: skip
    assert other.digest() != settings.digest()
    run_study(other, **kw)  # no "Changing param values is not allowed", no stale restore
    _, runs = _runs(uri, "t")
    studies = [r for r in runs if r.data.tags.get("sanode.kind") == "tune"]
    assert sorted(r.data.tags["sanode.digest"] for r in studies) == sorted(
        [settings.digest(), other.digest()]
    )
    assert all(r.info.status == "FINISHED" for r in studies)


@pytest.mark.slow
def test_a_lost_ray_folder_costs_no_training(tmp_path, ray_env):
    """A new machine given only ``trials-<digest>`` (no Ray experiment, no MLflow store)
    trains nothing again: each trial of the new experiment finds its checkpoint by its number
    and settings, and the tables, models and MLflow epochs are those of the first run."""
    import shutil

    data = _prepare(tmp_path)
    settings = StudySettings(name="letters", base=BASE, search_space={"eps_train": [0.0, 0.2]})
    kw = dict(data_path=data, storage_dir=tmp_path / "ray", experiment="t", num_cpus=2,
              project_root=tmp_path)  # fmt: skip
    first = run_study(settings, out_dir=tmp_path / "out1",
                      tracking_uri=f"sqlite:///{tmp_path / 'one.db'}", **kw)  # fmt: skip
    state = tmp_path / "ray" / f"trials-{settings.digest()}"
    blobs = {p: p.read_bytes() for p in state.glob("*/model.pt")}
    # named by number and settings, not by Ray's experiment
    assert sorted(p.parent.name[:6] for p in blobs) == ["00000-", "00001-"]
    shutil.rmtree(tmp_path / "ray" / f"tune-{settings.digest()}")
    uri = f"sqlite:///{tmp_path / 'two.db'}"
    second = run_study(settings, out_dir=tmp_path / "out2", tracking_uri=uri, **kw)
    assert {p: p.read_bytes() for p in state.glob("*/model.pt")} == blobs  # none retrained
    assert set(second["trial_id"]).isdisjoint(first["trial_id"])  # a new Ray experiment
    # the epochs' wall and CPU come from the checkpoints too: a carried run keeps them
    assert (first["epoch_s"] > 0).all() and first["cpu"].str.len().gt(0).all()
    columns = ["eps_train", "epoch", "train_loss", "val_accuracy", "epoch_s", "cpu"]
    order = ["eps_train", "epoch"]
    pd.testing.assert_frame_equal(
        first[columns].sort_values(order).reset_index(drop=True),
        second[columns].sort_values(order).reset_index(drop=True),
    )
    for name in ("eps_train=0.pt", "eps_train=0.2.pt"):
        one, two = (tmp_path / out / "best" / name for out in ("out1", "out2"))
        assert one.read_bytes() == two.read_bytes()
    client = MlflowClient(tracking_uri=uri)
    for run_id, rows in second.groupby("mlflow_run_id"):  # every epoch, from the checkpoints
        steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
        assert steps == sorted(rows["epoch"])


def test_trial_checkpoints_are_named_by_number_and_settings(tmp_path):
    from sanode.pipeline.trial_tracking import trial_checkpoint

    one = trial_checkpoint(tmp_path, "6bf0a_00003", {"eps_train": 0.1})
    assert one.parent.parent == tmp_path and one.parent.name.startswith("00003-")
    assert trial_checkpoint(tmp_path, "0c1d2_00003", {"eps_train": 0.1}) == one
    assert trial_checkpoint(tmp_path, "6bf0a_00003", {"eps_train": 0.2}) != one
    assert trial_checkpoint(tmp_path, "6bf0a_00004", {"eps_train": 0.1}) != one
    # a checkpoint kept under the trial id (an earlier release) is continued in place
    former = tmp_path / "6bf0a_00003" / "model.pt"
    former.parent.mkdir()
    former.write_bytes(b"")
    assert trial_checkpoint(tmp_path, "6bf0a_00003", {"eps_train": 0.1}) == former


def test_optuna_searcher_refuses_grids_and_the_noise_axis():
    from sanode.pipeline.study import searcher_problems

    space = {"lr": [0.01, 0.03], "eps_train": [0.0, 0.3], "dt": {"uniform": [0.05, 0.1]}}
    lines = searcher_problems({"name": "optuna"}, space)
    assert len(lines) == 2
    assert lines[0].startswith("search_space.eps_train: the optuna searcher cannot search")
    assert "write {choice: [0.01, 0.03]} or use searcher basic" in lines[1]
    assert searcher_problems({"name": "basic"}, space) == []
    with pytest.raises(ValueError, match="takes distributions, not grids"):
        StudySettings(name="x", base=BASE, search_space={"lr": [0.01]},
                      searcher={"name": "optuna"})  # fmt: skip


def test_rays_restore_advice_is_filtered():
    import logging

    from sanode.pipeline.tune import RestoreHintFilter

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("ray.tune.tune", logging.WARNING, __file__, 1, msg, None, None)

    hint = RestoreHintFilter()
    assert not hint.filter(record("saved.\nResume experiment with: Tuner.restore(path=...)"))
    assert hint.filter(record("Total run time: 3.1 seconds"))


@pytest.mark.slow
def test_optuna_asha_search_resumes_after_ctrl_c_and_logs_every_trial(tmp_path, ray_env, caplog):
    """Optuna's TPE with ASHA: interrupted (SIGINT, as Ctrl-C) once trials have finished, the
    rerun resumes (finished trials untouched, the searcher's state restored) and completes."""
    import signal
    import threading
    import time

    from sanode.pipeline.tune import StudyInterrupted

    data = _prepare(tmp_path)
    settings = StudySettings(
        name="letters",
        base={**BASE, "epochs": 3},
        search_space={"lr": {"loguniform": [0.003, 0.1]}, "eig_mean": {"uniform": [-6.0, -3.0]}},
        num_samples=6,
        scheduler={"name": "asha", "grace_period": 1},
        searcher={"name": "optuna", "seed": 0, "max_concurrent": 2},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = dict(data_path=data, out_dir=tmp_path / "out", storage_dir=tmp_path / "ray",
              tracking_uri=uri, experiment="t", num_cpus=2, project_root=tmp_path)  # fmt: skip

    def checkpoints() -> dict[str, bytes]:
        return {
            p.parent.name: p.read_bytes() for p in (tmp_path / "ray").glob("trials-*/*/model.pt")
        }

    def finished_one() -> bool:  # a trial has trained all its epochs (not ASHA-stopped)
        for blob in checkpoints().values():
            try:
                if torch.load(io.BytesIO(blob), weights_only=False)["epoch"] >= 3:
                    return True
            except Exception:  # a checkpoint being written: read it again next time
                continue
        return False

    def interrupt() -> None:  # Ctrl-C once one trial has finished and others have not
        deadline = time.monotonic() + 120
        while not finished_one() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    with pytest.raises(StudyInterrupted, match="Rerun the same command to resume"):
        run_study(settings, **kw)
    watcher.join()
    # Ray's own advice (Tuner.restore) is not shown: the pipeline resumes by a rerun
    assert not any("Tuner.restore(" in r.getMessage() for r in caplog.records)
    before = checkpoints()
    table = run_study(settings, **kw)

    by_trial = table.groupby("trial_id")
    trials = by_trial.agg(lr=("param_lr", "first"), mean=("param_eig_mean", "first"),
                          last=("epoch", "max"))  # fmt: skip
    assert len(trials) == 6 and trials["lr"].nunique() == 6  # sampled, not a grid
    assert trials["lr"].between(0.003, 0.1).all() and trials["mean"].between(-6, -3).all()
    assert (trials["last"] <= 3).all() and (trials["last"] < 3).any()  # ASHA stopped some
    after = checkpoints()
    assert set(before) <= set(after)
    finished = 0
    trial_of = {Path(c).parent.name: t for t, c in by_trial["checkpoint"].first().items()}
    for folder, blob in before.items():  # a trial that had finished was not trained again
        epoch = torch.load(io.BytesIO(blob), weights_only=False)["epoch"]
        if epoch == trials.loc[trial_of[folder], "last"]:
            finished += 1
            assert after[folder] == blob, folder
    assert finished >= 1
    _, runs = _runs(uri, "t")
    tune_runs = [r for r in runs if r.data.tags.get("sanode.kind") == "tune"]
    assert [r.info.status for r in tune_runs] == ["FINISHED"]  # resumed, not duplicated
    assert json.loads(tune_runs[0].data.params["searcher"])["name"] == "optuna"
    trial_runs = [r for r in runs if r.data.tags.get("sanode.kind") == "trial"]
    assert len(trial_runs) == 6 and all(r.info.status == "FINISHED" for r in trial_runs)
    for run in trial_runs:
        assert set(TrainConfig().to_dict()) <= set(run.data.params)
        assert run.data.tags["sanode.searched"] == "eig_mean,lr"
