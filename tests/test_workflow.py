"""The Snakemake workflow: DAG, lint, config validation and the smoke study end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import pandas as pd
import pytest
from mlflow import MlflowClient

from sanode.config import TrainConfig
from sanode.pipeline import analyses, tables
from sanode.training.checkpoint import load_model

from .idx import write_mirror
from .workflow_helpers import ROOT, load_config, snakemake, workflow_env, write_config

STAGES = ["prepare_data", "tune", "evaluate", "aggregate", "figures", "all"]
ANALYSES = list(analyses.ANALYSES)


@pytest.mark.parametrize(
    "name, wanted, letters",
    [
        ("smoke", ANALYSES, True),
        ("default", ANALYSES, True),
        ("paper", ANALYSES, True),
        # long and search run MNIST and Fashion only, with a subset of the analyses
        ("long", ["cases", "inversion", "census"], False),
        ("search", ["sensitivity"], False),
    ],
)
def test_dry_run_lists_every_stage(tmp_path, name, wanted, letters):
    res = snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(ROOT / f"workflow/config/{name}.yaml"),
        env=workflow_env(tmp_path),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in STAGES + [f"{k}_{a}" for a in wanted for k in ("analysis", "figures")]:
        assert f"rule {stage}:" in res.stdout or f"localrule {stage}:" in res.stdout, stage
    assert ("wildcards: study=letters" in res.stdout) == letters


def test_an_evaluate_job_takes_the_cores_of_one_trial(tmp_path):
    """The images' evaluate jobs (10,000 test images at T = 120) run on both cores that one of
    their trials trains on; the letters' (one core a trial) run one core each, two at a time."""
    res = snakemake(
        tmp_path,
        "-n",
        "--cores",
        "2",
        "--configfile",
        str(ROOT / "workflow/config/default.yaml"),
        env=workflow_env(tmp_path),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    threads = {}
    for block in res.stdout.split("\n\n"):
        if "rule evaluate:" in block:
            study = block.split("study=")[1].split(",")[0].split()[0]
            # Snakemake prints a job's threads only where they are more than one
            n = block.split("threads: ")[1].split()[0] if "threads: " in block else "1"
            threads.setdefault(study, set()).add(n)
    assert threads == {"letters": {"1"}, "mnist": {"2"}, "fashion": {"2"}}


def test_lint_is_clean(tmp_path):
    res = snakemake(
        tmp_path,
        "--lint",
        "--configfile",
        str(ROOT / "workflow/config/smoke.yaml"),
        env=workflow_env(tmp_path),
        timeout=120,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["studies"]["letters"]["train"].update(learning_rate=1.0),
            "studies.letters.train: unknown training setting(s) ['learning_rate']",
        ),
        (
            lambda c: c["studies"]["letters"]["train"].update(dataset="cifar"),
            "'cifar' is neither a data set name (letters, mnist, fashion, kmnist",
        ),
        (
            lambda c: c["studies"]["letters"].update(scheduler={"name": "hyperband"}),
            "'hyperband' is not one of ['fifo', 'asha']",
        ),
        (lambda c: c.update(colour="blue"), "(top level): unknown key(s) ['colour']"),
        (
            lambda c: c["studies"]["letters"]["search_space"].update(eps_train=[0.0, 1.5]),
            "studies.letters.search_space.eps_train: grid value 1.5 is not a valid setting",
        ),
        (
            lambda c: c["studies"]["letters"]["evaluate"].update(colour=1),
            "studies.letters.evaluate: unknown key(s) ['colour']",
        ),
        (
            lambda c: c["studies"]["letters"]["train"].update(eps_train=3.0),
            "eps_train must lie in [0, 1]",
        ),
        (
            lambda c: c["analyses"]["mse_time"]["targets"][0].update(study="cifar"),
            "analyses.mse_time: study 'cifar' is not defined under 'studies'",
        ),
        (
            lambda c: c["analyses"]["timestep"].update(dts=[0.3]),
            "analyses.timestep: dt = 0.3 does not divide t = 2.0",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, change, message):
    config = load_config("smoke")
    change(config)
    path = write_config(tmp_path / "bad.yaml", config)
    res = snakemake(
        tmp_path, "--cores", "1", "--configfile", str(path), env=workflow_env(tmp_path), timeout=120
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert message in out, out[-3000:]
    assert f"{path}: " in out  # the line names the file
    assert "additionalProperties" not in out and "Traceback" not in out  # no schema dump
    assert len(out.splitlines()) < 25, out
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (a free port), its own store and artifacts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path / "mlflow-server"
    folder.mkdir()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
           "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]  # fmt: skip
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=folder)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((folder / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _rest(url: str, endpoint: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{endpoint}?{urlencode(query)}") as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path, mlflow_server, monkeypatch):
    """The whole DAG on tiny data, tracked by a real MLflow server (MLFLOW_TRACKING_URI)."""
    mirror = tmp_path / "mirror"
    write_mirror(mirror, n_train=100, n_test=30)
    config = load_config("smoke")
    config["project"]["verify_checksums"] = False  # tiny test files are not the official ones
    path = write_config(tmp_path / "smoke.yaml", config)
    env = {**workflow_env(tmp_path, mirror), "MLFLOW_TRACKING_URI": mlflow_server}
    res = snakemake(tmp_path, "--cores", "2", "--configfile", str(path), env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-5000:]

    results = tmp_path / "results"
    for name in ("trials", "accuracy", "mse_curves"):
        frame = pd.read_parquet(results / "tables" / f"{name}.parquet")
        tables.check_schema(frame, name)
        assert frame["mlflow_run_id"].notna().all() and len(frame) > 0
    accuracy = pd.read_parquet(results / "tables" / "accuracy.parquet")
    assert set(accuracy["study"]) == {"letters", "mnist", "mnist_winner"}
    assert sorted(accuracy.loc[accuracy["study"] == "letters", "eps_train"].unique()) == [0.0, 0.3]
    letters = accuracy[accuracy["study"] == "letters"]
    # the best lr of each eps_train from both training seeds; MNIST has one model
    assert sorted(letters["train_seed"].unique()) == [0, 1]
    # 3 eps_test x 2 test-noise draws
    assert letters.groupby("eps_train")["is_best"].sum().tolist() == [6, 6]
    assert sorted(letters["noise_seed"].unique()) == [0, 1]
    assert accuracy.loc[accuracy["study"] == "mnist", "is_best"].all()
    assert (accuracy["exact"] + accuracy["partial"] + accuracy["wrong"] == accuracy["n"]).all()
    for figure in (
        "fig3_mf_vs_eps_test_letters",
        "fig4a_mse_over_time_mnist",
        "tuning_letters",
        "secV_accuracy_buckets",
    ):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 5_000
    secv = pd.read_parquet(results / "tables" / "secV_accuracy.parquet")
    tables.check_schema(secv, "secV_accuracy")
    assert set(zip(secv["study"], secv["source"], strict=True)) == {
        ("letters", "sanode"),
        ("mnist", "sanode"),
        ("mnist", "paper"),
        ("mnist_winner", "sanode"),
        ("mnist_winner", "paper"),
    }
    # the retrain stage trained the search's winning lr at the retrain's own budget
    best = json.loads((results / "tune" / "mnist" / "best.json").read_text())
    won = best["models"]["0"]["params"]["lr"]
    trials = pd.read_parquet(results / "tables" / "trials.parquet")
    retrained = trials[trials["study"] == "mnist_winner"]
    assert retrained["trial_id"].nunique() == 1 and retrained["epoch"].max() == 3
    model, cfg, _ = load_model(results / "tune" / "mnist_winner" / "best" / "eps_train=0.pt")
    assert cfg.lr == won and cfg.epochs == 3 and cfg.train_on_validation
    files = {name: analyses.outputs(config, name) for name in analyses.configured(config)}
    assert sorted(files) == sorted(analyses.ANALYSES)  # the smoke config runs every analysis
    for name, spec in files.items():
        for key, table_path in spec["tables"].items():
            frame = pd.read_parquet(tmp_path / table_path)
            table = analyses.get(name).tables[key]
            tables.check_schema(frame, table.name, table.schema)
            assert len(frame) > 0 and frame["mlflow_run_id"].notna().all(), table_path
        for figure in spec["figures"].values():
            assert (tmp_path / figure).stat().st_size > 5_000, figure
        assert list((results / "benchmarks" / "analysis").glob(f"{name}.tsv")), name
    # the baselines: a validation-chosen epoch, scored on the SA-nODE's own test draws
    base = pd.read_parquet(results / "tables" / "baselines.parquet")
    on_letters = base[base["study"] == "letters"]
    assert sorted(on_letters["noise_seed"].unique()) == [0, 1]
    assert (base["epoch"] <= base["epochs_run"]).all() and base["val_accuracy"].notna().all()
    # several targets of Figs. 4-6, one model each (Fig. 4: a letters and an image model)
    perturbed = pd.read_parquet(results / "tables" / "fig6_collective_perturbation.parquet")
    assert sorted(perturbed["eps_train"].unique()) == [0.0, 0.3]
    assert perturbed.groupby("eps_train")["m"].nunique().tolist() == [6, 6]
    curves = pd.read_parquet(results / "tables" / "fig4_mse_time.parquet")
    assert set(curves["study"]) == {"letters", "mnist"}
    steps = pd.read_parquet(results / "tables" / "fig8_timestep.parquet")
    assert set(steps["method"]) == {"euler", "rk4"}
    stability = pd.read_parquet(results / "tables" / "stability.parquet")
    assert (stability["max_real_jacobian_eig"] < 0).all() and len(stability) == 2 + 1 + 1
    census = pd.read_parquet(results / "tables" / "census.parquet")
    parts = census["planted"] + census["spurious"] + census["not_converged"]
    assert (parts == census["n"]).all()
    for rule in ("prepare_data", "tune", "evaluate"):
        assert list((results / "benchmarks" / rule).rglob("*.tsv")), rule
    assert (results / "logs" / "tune" / "letters.log").stat().st_size > 0

    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server
    client = MlflowClient(tracking_uri=mlflow_server)
    rest = _rest(mlflow_server, "experiments/get-by-name", experiment_name="sanode-smoke")
    tags = {t["key"]: t["value"] for t in rest["experiment"]["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # UI opens on runs
    exp = client.get_experiment_by_name("sanode-smoke")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    studies = {
        r.data.tags["sanode.study"]: r for r in runs if r.data.tags.get("sanode.kind") == "tune"
    }
    assert set(studies) == {"letters", "mnist", "mnist_winner"}
    for study, parent in studies.items():
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["sanode.git_revision"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        trials = [r for r in children if r.data.tags.get("sanode.kind") == "trial"]
        evals = [r for r in children if r.data.tags.get("sanode.rule") == "evaluate"]
        # letters: 2 eps x 2 seeds; mnist_winner: the one retrain of mnist's winner
        assert len(trials) == {"letters": 4, "mnist": 2, "mnist_winner": 1}[study] and evals
        searched = sorted(config["studies"][study].get("search_space", {}))
        dataset = config["studies"][study]["train"]["dataset"]
        for trial in trials:
            history = client.get_metric_history(trial.info.run_id, "train_loss")
            assert min(m.step for m in history) == 1
            # the complete resolved configuration, defaults included, and the search
            assert set(TrainConfig().to_dict()) <= set(trial.data.params)
            if searched:  # (a retrain searches nothing)
                assert trial.data.params["search.searched"] == ",".join(searched)
                assert trial.data.tags["sanode.searched"] == ",".join(searched)
            # what the precision settings meant on the trial's node, with the measured times
            assert trial.data.tags["sanode.train_products"] == "float32"
            assert trial.data.tags["sanode.train_route"] in ("torch", "onednn")
            assert json.loads(trial.data.tags["sanode.calibration_times_ms"])
            data = {d.dataset.name: d for d in trial.inputs.dataset_inputs}
            assert set(data) == {f"{dataset}-train", f"{dataset}-val"}
            assert json.loads(data[f"{dataset}-train"].dataset.profile)["size"] > 0
        if study == "mnist_winner":  # the retrain trained (and logged) the winner's lr
            assert float(trials[0].data.params["lr"]) == won
        for run in evals:
            assert [d.dataset.name for d in run.inputs.dataset_inputs] == [f"{dataset}-test"]
        versions = client.search_model_versions(f"name='sanode-{study}'")
        assert len(versions) == 1  # the study's first eps_train, registered once
        version = versions[0]
        assert version.tags["trained_by_run"] in {t.info.run_id for t in trials}
        secv = pd.read_parquet(results / "tables" / "secV_accuracy.parquet")
        ours = secv[(secv["study"] == study) & (secv["source"] == "sanode")]
        assert float(version.tags["test_accuracy"]) == pytest.approx(ours["accuracy"].item())
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
        assert f"figures/fig3_mf_vs_eps_test_{study}.png" in artifacts
    assert all(r.info.status == "FINISHED" for r in runs)
    analysis_runs = {r.data.tags["sanode.analysis"]: r for r in runs
                     if r.data.tags.get("sanode.kind") == "analysis"}  # fmt: skip
    assert sorted(analysis_runs) == sorted(ANALYSES)
    for name, run in analysis_runs.items():
        assert run.data.tags["sanode.git_revision"], name
        listed = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
        assert len(listed) == len(files[name]["tables"]), name
        assert client.list_artifacts(run.info.run_id, "figures"), name

    # the registered model classifies a test image as the checkpoint does
    from sanode.data.prepare import load_prepared
    from sanode.pipeline.classify import AttractorClassifier, classify, load_classifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    registered = load_classifier("models:/sanode-mnist/latest")
    model, cfg, _ = load_model(tmp_path / "results/tune/mnist/best/eps_train=0.pt")
    x = load_prepared(tmp_path / "data" / "prepared" / "mnist.pt").split("test")[0][:5]
    t_eval = config["studies"]["mnist"]["evaluate"].get("t_eval", cfg.t_eval)
    checkpoint = classify(AttractorClassifier.from_config(model, cfg, t_eval), x)
    assert classify(registered, x).predicted == checkpoint.predicted
    assert classify(registered, x).overlap == checkpoint.overlap

    report = snakemake(
        tmp_path,
        "--configfile",
        str(path),
        "--report",
        str(results / "report.html"),
        env=workflow_env(tmp_path, mirror),
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "ERROR/" not in report.stderr + report.stdout  # every caption is valid reST
    assert (results / "report.html").stat().st_size > 10_000


def test_config_changes_rerun_what_they_determine(tmp_path):
    """Raising letters `epochs` used to leave "Nothing to be done": every rule's params carry
    a digest of the settings that determine its output."""
    from sanode.pipeline.study import data_digest, evaluation_digest, study_digest

    config = load_config("smoke")
    env = workflow_env(tmp_path)
    path = write_config(tmp_path / "c.yaml", config)
    target = "data/prepared/letters.pt"
    run = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]

    more_epochs = load_config("smoke")
    more_epochs["studies"]["letters"]["train"]["epochs"] += 1
    assert study_digest(more_epochs, "letters") != study_digest(config, "letters")
    assert evaluation_digest(more_epochs, "letters") != evaluation_digest(config, "letters")
    assert data_digest(more_epochs, "letters") == data_digest(config, "letters")
    path = write_config(tmp_path / "c.yaml", more_epochs)
    dry = snakemake(tmp_path, target, "-n", "--configfile", str(path), env=env, timeout=120)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr

    more_copies = load_config("smoke")
    more_copies["studies"]["letters"]["train"]["letters_copies"] += 1
    path = write_config(tmp_path / "c.yaml", more_copies)
    dry = snakemake(tmp_path, target, "-n", "--configfile", str(path), env=env, timeout=120)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0 and "rule prepare_data:" in out, out[-3000:]
    assert "params" in out.lower()  # the reason: the rule's params changed
