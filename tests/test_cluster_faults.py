"""Faults a cluster user meets: a full disk, two studies at once on one store, a tracking
server that goes away, a killed trial worker, a lost Ray node. Each must be survived with
nothing lost, or end with one line saying what to do."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from sanode import files
from sanode.config import TrainConfig
from sanode.data.datasets import load_split
from sanode.data.prepare import prepare_dataset
from sanode.files import DiskFullError
from sanode.pipeline.study import StudySettings
from sanode.pipeline.tracking import TrackingStoreError
from sanode.pipeline.tune import run_study
from sanode.training.checkpoint import load_checkpoint, save_checkpoint
from sanode.training.train import train

from .ray_helpers import trial_workers

# long enough (about 0.5 s an epoch here) that a fault lands mid-study
BASE = dict(
    dataset="letters",
    letters_copies=16,
    batch_size=10,
    lr=0.03,
    t_train=6.0,
    t_eval=4.0,
    epochs=16,
)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# -- a full disk -----------------------------------------------------------------------------
def test_full_disk_keeps_the_previous_checkpoint_and_says_where(tmp_path, monkeypatch):
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.arange(3.0)})

    def torch_save_half(obj, f, *args, **kwargs):
        f.write(b"\0" * 100)  # a torn half-written file, then the disk is full
        raise RuntimeError(
            "[enforce fail at inline_container.cc] . PytorchStreamWriter failed "
            "writing file data/0: file write failed"
        ) from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", torch_save_half)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(3)})
    message = str(info.value)
    assert str(path) in message and "free on its disk" in message and "rerun" in message
    assert "\n" not in message
    monkeypatch.undo()
    kept = load_checkpoint(path)
    assert kept["epoch"] == 1 and torch.equal(kept["weights"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left


def test_full_disk_keeps_the_previous_table(tmp_path, monkeypatch):
    path = tmp_path / "trials.parquet"
    files.write_parquet(path, pd.DataFrame({"epoch": [1]}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _no_space)
    with pytest.raises(DiskFullError, match=r"trials\.parquet"):
        files.write_parquet(path, pd.DataFrame({"epoch": [1, 2]}))
    monkeypatch.undo()
    assert pd.read_parquet(path)["epoch"].tolist() == [1]
    assert len(list(tmp_path.iterdir())) == 1
    # other write errors are not reported as a full disk
    monkeypatch.setattr(
        pd.DataFrame,
        "to_parquet",
        lambda *a, **k: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")),
    )
    with pytest.raises(PermissionError):
        files.write_parquet(path, pd.DataFrame({"epoch": [1, 2]}))


def test_training_on_a_full_disk_stops_with_the_last_epoch_kept_and_resumes(tmp_path, monkeypatch):
    cfg = TrainConfig(**{**BASE, "letters_copies": 4, "epochs": 3, "t_train": 2.0, "t_eval": 2.0})
    data = load_split(cfg, "train")
    path = tmp_path / "model.pt"
    real_save = torch.save
    calls = {"n": 0}

    def save_until_full(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2's checkpoint: the disk is full
            _no_space()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(DiskFullError):
        train(cfg, data.x, data.y, data.patterns, checkpoint_path=path, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    result = train(cfg, data.x, data.y, data.patterns, checkpoint_path=path, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    reference = train(cfg, data.x, data.y, data.patterns, checkpoint_path=None, progress=False)
    for a, b in zip(result.model.parameters(), reference.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


_ON_TINY_DISK = """
import sys, torch, pandas as pd
from sanode import files
from sanode.training.checkpoint import load_checkpoint, save_checkpoint
from sanode.files import DiskFullError
root = sys.argv[1]
save_checkpoint(f"{root}/model.pt", {"epoch": 1, "w": torch.ones(1000)})
try:
    save_checkpoint(f"{root}/model.pt", {"epoch": 2, "w": torch.ones(1_000_000)})  # 4 MB
except DiskFullError as err:
    print("CHECKPOINT", err)
assert load_checkpoint(f"{root}/model.pt")["epoch"] == 1
files.write_parquet(f"{root}/t.parquet", pd.DataFrame({"a": [1]}))
try:
    files.write_parquet(f"{root}/t.parquet", pd.DataFrame({"a": range(2_000_000)}))
except DiskFullError as err:
    print("TABLE", err)
assert pd.read_parquet(f"{root}/t.parquet")["a"].tolist() == [1]
import os
print("LEFT", sorted(os.listdir(root)))
"""


def test_a_real_full_filesystem_keeps_the_previous_files(tmp_path):
    """On a 1 MiB tmpfs (mounted in a user namespace where the system allows it)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = f'mount -t tmpfs -o size=1m tmpfs "{mount}" && exec "$0" -c "$1" "{mount}"'
    try:
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, sys.executable, _ON_TINY_DISK],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError:
        pytest.skip("no unshare on this system (the ENOSPC tests above still run)")
    if "mount" in done.stderr and done.returncode != 0 and "CHECKPOINT" not in done.stdout:
        pytest.skip(f"user namespaces cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert "no space left on device" in lines["CHECKPOINT"] and "model.pt" in lines["CHECKPOINT"]
    assert "free on its disk" in lines["TABLE"] and "t.parquet" in lines["TABLE"]
    assert lines["LEFT"] == "['model.pt', 't.parquet']"


# -- two writers on one store ----------------------------------------------------------------
_WRITER = """
import sys
from sanode.pipeline import tracking
uri, who = sys.argv[1], sys.argv[2]
meta = {"dataset": "letters", "raw_md5": {"letters": "x"}, "cache_sha256": "y",
        "sizes": {"train": 40, "val": 10}}
with tracking.run(uri, "sanode", key={"sanode.study": who, "sanode.kind": "tune"},
                  name=who) as run:
    run.log_params({"lr": 0.03, "model": {"a": 1.0}})
    run.log_datasets(meta, "/data/letters.pt", {"train": 0.0, "val": 0.0})
    for step in range(40):
        run.log_metrics({"train_loss": 1.0 / (step + 1), "val_accuracy": 0.5}, step=step)
"""


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_three_studies_at_once_on_a_new_store(tmp_path, store):
    # before the SQLite store was created under a lock, the processes ran MLflow's schema
    # migrations at once and one failed ("Online migration expected to match one row")
    if store == "server":
        server = _Server(tmp_path)
        server.start()
        uri = server.uri
    else:
        server, uri = None, f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        _three_writers(uri)
    finally:
        if server is not None:
            server.stop()


def _three_writers(uri: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri, name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("one", "two", "three")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sanode")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["sanode.study"] for r in runs) == ["one", "three", "two"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, "train_loss")) == 40
        assert len(r.inputs.dataset_inputs) == 2


# -- helpers for the Ray faults ----------------------------------------------------------------
def _prepare(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "letters.pt"
    prepare_dataset(TrainConfig(**BASE), path, val_fraction=0.25)
    return path


def _study(tmp_path: Path, settings: StudySettings, tracking_uri: str, **kwargs):
    """:func:`run_study` on the prepared letters of ``tmp_path``, in its ``ray`` and ``out``
    folders (``kwargs``: the rest, e.g. a cluster address)."""
    return run_study(
        settings,
        data_path=tmp_path / "data" / "letters.pt",
        out_dir=tmp_path / "out",
        storage_dir=tmp_path / "ray",
        tracking_uri=tracking_uri,
        experiment="t",
        project_root=tmp_path,
        **kwargs,
    )


def _checkpoint_epochs(storage: Path) -> dict[str, int]:
    """Trial id -> the epoch of its checkpoint, for every trial that has one."""
    epochs = {}
    for ckpt in storage.glob("trials-*/*/model.pt"):
        try:
            epochs[ckpt.parent.name] = int(load_checkpoint(ckpt)["epoch"])
        except Exception:  # replaced while read
            continue
    return epochs


def _when(condition, action, timeout: float = 240.0) -> threading.Thread:
    """Run ``action()`` in a thread as soon as ``condition()`` holds."""
    done = {}

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                done["result"] = action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.done = done
    thread.start()
    return thread


def _assert_every_epoch_logged_once(uri: str, table: pd.DataFrame, epochs: int) -> None:
    client = MlflowClient(tracking_uri=uri)
    for trial_id, rows in table.groupby("trial_id"):
        assert sorted(rows["epoch"]) == list(range(1, epochs + 1)), trial_id
        run_id = rows["mlflow_run_id"].iloc[0]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED", trial_id
        steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
        # a restarted trial that recomputed its epochs would have logged them twice
        assert steps == list(range(1, epochs + 1)), (trial_id, steps)
        assert run.data.params["lr"], trial_id
        artifacts = [a.path for a in client.list_artifacts(run_id, "checkpoint")]
        assert artifacts == ["checkpoint/model.pt"], trial_id


def _trial_workers() -> list:
    return trial_workers(os.environ["RAY_TMPDIR"])


# -- a killed trial worker, a lost node ------------------------------------------------------
@pytest.mark.slow
def test_killed_trial_worker_continues_from_its_checkpoint(tmp_path, ray_env):
    _prepare(tmp_path)
    storage = tmp_path / "ray"
    settings = StudySettings(
        name="letters",
        base=BASE,
        search_space={"lr": [0.03, 0.02]},
        cpus_per_trial=1,
        max_failures=1,
    )

    def kill_one_worker():
        victims = _trial_workers()
        if victims:
            os.kill(victims[0].pid, signal.SIGKILL)  # as the OOM killer does
        return [v.pid for v in victims[:1]]

    killer = _when(
        lambda: any(e >= 3 for e in _checkpoint_epochs(storage).values()) and _trial_workers(),
        kill_one_worker,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = _study(tmp_path, settings, uri, num_cpus=2)
    killer.join(timeout=5)
    assert killer.done.get("result"), "no trial worker was killed: the study ran too fast"
    assert sorted(table.groupby("trial_id")["status"].first()) == ["TERMINATED"] * 2
    _assert_every_epoch_logged_once(uri, table, BASE["epochs"])
    errors = list((storage).glob("tune-*/*/error.txt"))
    assert errors, "Tune recorded no failure: the kill did not hit a running trial"


@pytest.mark.slow
def test_lost_ray_node_moves_the_trial_to_another_node(tmp_path, ray_env):
    from ray.cluster_utils import Cluster

    _prepare(tmp_path)
    storage = tmp_path / "ray"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()

        def node_of_trial():
            for worker in _trial_workers():
                parents = {p.pid for p in worker.parents()}
                for node in nodes:
                    raylet = node.all_processes["raylet"][0].process.pid
                    if raylet in parents:
                        return node
            return None

        def remove_node():
            node = node_of_trial()
            if node is None:
                return None
            cluster.remove_node(node, allow_graceful=False)
            return node.node_id

        killer = _when(
            lambda: (
                any(e >= 3 for e in _checkpoint_epochs(storage).values())
                and node_of_trial() is not None
            ),
            remove_node,
        )
        settings = StudySettings(
            name="letters", base=BASE, search_space={"lr": [0.03]}, cpus_per_trial=1, max_failures=2
        )
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        table = _study(tmp_path, settings, uri, ray_address=cluster.address)
        killer.join(timeout=5)
    finally:
        cluster.shutdown()
    assert killer.done.get("result"), "no node was removed: the study ran too fast"
    assert table.groupby("trial_id")["status"].first().tolist() == ["TERMINATED"]
    _assert_every_epoch_logged_once(uri, table, BASE["epochs"])


# -- a tracking server that goes away ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``mlflow server`` on a loopback port with a SQLite store, stopped and started at will."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
        log = open(self.root / "server.log", "ab")  # closed once the server has it
        self.proc = subprocess.Popen(
            [
                mlflow_cli,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'server.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the server holds its own copy
        from sanode.pipeline.tracking import wait_for_store

        wait_for_store(self.uri, 120, every=0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_tracking_server_outage_mid_study_loses_nothing(tmp_path, ray_env, caplog):
    _prepare(tmp_path)
    storage = tmp_path / "ray"
    server = _Server(tmp_path)
    server.start()
    try:

        def outage():
            server.stop()
            time.sleep(8)  # trials go on meanwhile
            server.start()
            return True

        killer = _when(lambda: any(e >= 2 for e in _checkpoint_epochs(storage).values()), outage)
        settings = StudySettings(name="letters", base=BASE, search_space={"lr": [0.03, 0.02]})
        table = _study(tmp_path, settings, server.uri, num_cpus=2, tracking_wait_s=120)
        killer.join(timeout=60)
        assert killer.done.get("result")
        assert "did not answer" in caplog.text  # the outage hit the study while it trained
        _assert_every_epoch_logged_once(server.uri, table, BASE["epochs"])
    finally:
        server.stop()


@pytest.mark.slow
def test_tracking_server_gone_for_good_ends_with_one_line_then_resumes(tmp_path, ray_env):
    _prepare(tmp_path)
    storage = tmp_path / "ray"
    server = _Server(tmp_path)
    server.start()
    settings = StudySettings(name="letters", base=BASE, search_space={"lr": [0.03]})
    kwargs = dict(num_cpus=2, tracking_wait_s=3)
    try:
        _when(lambda: any(e >= 2 for e in _checkpoint_epochs(storage).values()), server.stop)
        with pytest.raises(TrackingStoreError) as info:
            _study(tmp_path, settings, server.uri, **kwargs)
        message = str(info.value)
        assert server.uri in message and "rerun the same command" in message
        assert "\n" not in message
        assert list(_checkpoint_epochs(storage).values()) == [BASE["epochs"]]  # all trained
        finished_at = {p: p.stat().st_mtime for p in storage.glob("trials-*/*/model.pt")}
        server.start()
        table = _study(tmp_path, settings, server.uri, **kwargs)
        assert {p: p.stat().st_mtime for p in finished_at} == finished_at  # nothing retrained
        _assert_every_epoch_logged_once(server.uri, table, BASE["epochs"])
    finally:
        server.stop()
