"""The pipeline glue on tiny in-memory inputs with known answers: the analysis registry and its
settings against the schema, typed settings, paths, model selection, the sensitivity study,
the analysis stage with its MLflow run, the figure's data, and one evaluation path."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sanode.config import ConfigError
from sanode.pipeline import analyses, layout, selection, tracking
from sanode.pipeline.analyses.inversion import InversionSettings
from sanode.pipeline.analyses.sensitivity import sensitivity
from sanode.pipeline.study import EvaluateSettings, PrepareSettings

from .workflow_helpers import ROOT, load_config

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _schema_block(*path: str) -> dict:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return node


# -- registry and settings -------------------------------------------------------------------
@pytest.mark.parametrize("name", list(analyses.ANALYSES))
def test_schema_block_equals_the_settings_dataclass(name):
    """One source of defaults: the schema lists exactly the dataclass' fields, and every
    default it states is the dataclass' default."""
    analysis = analyses.get(name)
    block = _schema_block("analyses", name)
    fields = {f.name for f in dataclasses.fields(analysis.Settings)}
    assert set(block["properties"]) == fields
    defaults = analysis.Settings.defaults()
    for key, prop in block["properties"].items():
        if "default" in prop:
            assert prop["default"] == defaults[key], (name, key)
        else:  # a required key (study, targets) has no default anywhere
            assert key not in defaults, (name, key)
    assert block["description"] == analysis.description


@pytest.mark.parametrize("key, settings", [("evaluate", EvaluateSettings),
                                           ("prepare", PrepareSettings)])  # fmt: skip
def test_study_blocks_equal_their_settings(key, settings):
    block = _schema_block("studies")["additionalProperties"]["properties"][key]
    defaults = settings.defaults()
    assert set(block["properties"]) == set(defaults)
    for key, prop in block["properties"].items():
        assert prop["default"] == defaults[key], key


@pytest.mark.parametrize("name", list(analyses.ANALYSES))
def test_every_analysis_declares_tables_figures_and_captions(name):
    analysis = analyses.get(name)
    config = load_config("default")
    outputs = analyses.outputs(config, name)
    assert analysis.tables and outputs["figures"]
    for table in analysis.tables.values():
        assert "mlflow_run_id" not in table.schema  # the stage adds it
        assert set(table.schema.values()) <= set("fibO")
    for caption in outputs["captions"].values():
        assert (ROOT / "workflow" / "report" / f"{caption}.rst").is_file()
    names = [t.name for a in analyses.ANALYSES.values() for t in a.tables.values()]
    assert len(names) == len(set(names))  # no two analyses write the same table


def test_default_config_keeps_the_paper_figure_names():
    config = load_config("default")
    tables = {n: analyses.outputs(config, n)["tables"] for n in analyses.configured(config)}
    assert tables["mse_time"] == {
        "curves": "results/tables/fig4_mse_time.parquet",
        "finals": "results/tables/fig4_final_mse.parquet",
    }
    inputs = analyses.inputs(config, "cases")
    assert inputs["states"] == "results/eval/mnist/eps_train=0/states.pt"
    assert analyses.inputs(config, "sensitivity") == {
        "trials": [f"results/tune/{s}/trials.parquet" for s in ("letters", "mnist", "fashion")]
    }


def test_settings_are_typed_and_frozen():
    settings = analyses.get("mse_time").settings({"analyses": {"mse_time": {"study": "x"}}})
    assert settings.items == 2000 and settings.eps_test[-1] == 0.8
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.items = 3
    bad = [
        ({"study": "x", "items": "many"}, "analyses.mse_time.items must be an integer"),
        ({"study": "x", "colour": 1}, "unknown key(s) ['colour']; allowed keys"),
        ({}, "name one study (study, eps_train, label) or a list of targets"),
        ({"study": "x", "targets": [{"study": "y"}]}, "not both and not neither"),
        ({"study": "x", "eps_test": [0.1, "a"]}, "eps_test[1] must be a number"),
    ]
    for block, message in bad:
        with pytest.raises(ConfigError) as err:
            analyses.get("mse_time").settings({"analyses": {"mse_time": block}})
        assert message in str(err.value)
    inv = InversionSettings.from_mapping({"targets": [{"study": "mnist", "t_inv": 2}]})
    assert inv.targets[0].t_inv == 2.0 and isinstance(inv.targets[0].t_inv, float)
    assert inv.to_dict()["targets"] == [{"study": "mnist", "label": 0, "t_inv": 2.0}]
    with pytest.raises(ConfigError, match=r"dtypes\[0\] must be one of"):
        InversionSettings.from_mapping({"targets": [{"study": "m"}], "dtypes": ["float16"]})
    assert EvaluateSettings.from_mapping({"tol": None}).tol is None


def test_unknown_analysis_and_cross_checks_are_one_line_each():
    config = load_config("smoke")
    config["analyses"]["frobnicate"] = {}
    config["analyses"]["cases"] = {"study": "cifar"}
    lines = analyses.problems(config)
    assert lines == [
        "analyses.cases: study 'cifar' is not defined under 'studies' (defined: "
        "['letters', 'mnist', 'mnist_winner'])",
        f"analyses.frobnicate: unknown analysis; allowed: {list(analyses.ANALYSES)}",
    ]


# -- layout ------------------------------------------------------------------------------------
def test_layout_paths_and_labels():
    assert layout.eps_label(0.30000000000000004) == "0.3" and layout.eps_label(0) == "0"
    # the evaluate rule's wildcard takes every label written and no other spelling of it
    for eps in (0, 0.1, 0.25, 1.0, 2.5, 10, 1e-5, 0.30000000000000004):
        assert re.fullmatch(layout.EPS_LABEL, layout.eps_label(eps))
    for other in ("0.0", "0.30", "1.", ".3", "a"):
        assert not re.fullmatch(layout.EPS_LABEL, other)
    assert layout.model_path("m", 0.3) == "m/eps_train=0.3.pt"
    assert layout.model_path("m", 1.0, seed=2) == "m/eps_train=1.seed=2.pt"
    assert layout.evaluation("{study}", "{eps}", "states.pt") == (
        "results/eval/{study}/eps_train={eps}/states.pt"
    )
    assert layout.log("evaluate", "mnist", "eps_train=0") == (
        "results/logs/evaluate/mnist/eps_train=0.log"
    )
    with pytest.raises(ValueError, match="unknown evaluation output"):
        layout.evaluation("mnist", 0.0, "foo.csv")


# -- selection ---------------------------------------------------------------------------------
def _trials(rows):
    """A trials table: rows of (trial, eps_train, lr, seed, [(epoch, val_accuracy), ...])."""
    out = []
    for trial, eps, lr, seed, epochs, status in rows:
        for epoch, acc in epochs:
            out.append({"trial_id": trial, "eps_train": eps, "param_lr": lr, "param_seed": seed,
                        "epoch": epoch, "val_accuracy": acc, "train_loss": 1.0 / epoch,
                        "status": status, "checkpoint": f"/ckpt/{trial}.pt",
                        "mlflow_run_id": f"run-{trial}"})  # fmt: skip
    return pd.DataFrame(out)


def test_selection_takes_the_last_epoch_of_the_best_trial_and_its_seed_siblings():
    table = _trials(
        [
            ("a", 0.0, 0.1, 0, [(1, 0.5), (2, 0.9)], "TERMINATED"),
            ("b", 0.0, 0.1, 1, [(1, 0.6), (2, 0.7)], "TERMINATED"),
            ("c", 0.0, 0.2, 0, [(1, 0.95)], "TERMINATED"),  # stopped early, still the best
            ("d", 0.3, 0.1, 0, [(1, 0.99)], "ERROR"),
            ("e", 0.3, 0.2, 0, [(1, 0.4), (2, 0.3)], "TERMINATED"),  # last epoch counts
        ]
    )
    chosen = selection.select(table, metric="val_accuracy", mode="max", eps_grid=[0.0, 0.3])
    assert [(s.trial_id, s.epoch, s.metric_value) for s in chosen] == [
        ("c", 1, 0.95),
        ("e", 2, 0.3),
    ]
    assert chosen[0].seeds == {0: ("c", "/ckpt/c.pt")}  # no lr=0.2 trial with seed 1
    assert chosen[0].params == {"lr": 0.2, "seed": 0}
    record = selection.best_json(chosen, metric="val_accuracy", mode="max", models="out/best",
                                 failed=selection.failed_trials(table))  # fmt: skip
    assert record["models"]["0.3"]["checkpoint"] == "out/best/eps_train=0.3.pt"
    assert record["models"]["0"]["seeds"]["0"]["checkpoint"] == "out/best/eps_train=0.seed=0.pt"
    assert record["failed_trials"] == ["d"]
    low = selection.select(table, metric="val_accuracy", mode="min", eps_grid=[0.0])
    assert low[0].trial_id == "b" and set(low[0].seeds) == {0, 1}
    with pytest.raises(selection.NoModelError, match=r"eps_train=0\.6"):
        selection.select(table, metric="val_accuracy", mode="max", eps_grid=[0.6])


# -- sensitivity -------------------------------------------------------------------------------
def _synthetic_trials(n=40, seed=0):
    """lr determines the metric, batch size barely, the seed not at all (and a categorical
    schedule that does nothing)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        batch = int(rng.choice([50, 100]))
        acc = 0.9 + 0.025 * np.log10(lr) + 0.001 * (batch == 100) + rng.normal(0, 0.0005)
        for epoch in (1, 2):
            rows.append({"trial_id": f"t{i:02d}", "epoch": epoch, "status": "TERMINATED",
                         "val_accuracy": acc if epoch == 2 else 0.1, "param_lr": lr,
                         "param_batch_size": batch, "param_seed": i % 3,
                         "param_lr_schedule": ["cosine", "onecycle"][i % 2]})  # fmt: skip
    return pd.DataFrame(rows)


def test_sensitivity_ranks_the_setting_that_determines_the_metric_first():
    trials = _synthetic_trials()
    trials.loc[trials["trial_id"] == "t00", "status"] = "ERROR"  # left out
    ranking, points = sensitivity(
        trials,
        ["lr", "batch_size", "seed", "lr_schedule", "eps_train"],
        metric="val_accuracy",
        mode="max",
    )
    assert ranking["setting"].iloc[0] == "lr" and ranking["rank"].tolist() == [1, 2, 3, 4]
    assert ranking["variance_share"].iloc[0] > 0.8
    # chance level: lr in 4 quantile bins of 39 trials, the schedule in 2 groups
    chance = ranking.set_index("setting")["chance_share"]
    assert chance["lr"] == pytest.approx(3 / 38) and chance["lr_schedule"] == pytest.approx(1 / 38)
    assert ranking.set_index("setting").loc["lr", "spearman"] > 0.99
    assert np.isnan(ranking.set_index("setting").loc["lr_schedule", "spearman"])
    assert "eps_train" not in set(ranking["setting"])  # not searched: nothing to rank
    assert (ranking["trials"] == 39).all() and len(points) == 4 * 39
    best = trials[trials["epoch"] == 2].sort_values("val_accuracy").iloc[-1]
    assert ranking.set_index("setting").loc["lr", "best_value"] == str(best["param_lr"])
    # every value counts with its last epoch (epoch 1 scores 0.1 everywhere)
    assert points["metric_value"].min() > 0.3
    nothing, none = sensitivity(trials[trials["trial_id"] == "t01"], ["lr"],
                                metric="val_accuracy")  # fmt: skip
    assert nothing.empty and none.empty and "best_value" in nothing
    # a study that searched nothing concatenates with one that did, numbers kept numbers
    both = pd.concat([ranking, nothing], ignore_index=True)
    assert both["epoch"].dtype == "int64" and both["variance_share"].dtype == "float64"
    assert pd.concat([points, none])["metric_value"].dtype == "float64"


def test_sensitivity_compares_trials_stopped_early_at_a_common_epoch():
    """ASHA stopped half the trials after epoch 1: every trial is compared at epoch 1, not the
    finished ones at epoch 2 (their extra epoch would look like a better setting)."""
    trials = _synthetic_trials()
    trials["val_accuracy"] = np.where(trials["epoch"] == 1, 0.5, 0.9)
    trials.loc[trials["epoch"] == 1, "val_accuracy"] += 0.01 * (trials["param_batch_size"] == 100)
    stopped = trials["trial_id"].isin([f"t{i:02d}" for i in range(0, 40, 2)])
    trials = trials[~(stopped & (trials["epoch"] == 2))]  # the even trials end at epoch 1
    ranking, points = sensitivity(trials, ["lr_schedule", "batch_size"], metric="val_accuracy")
    assert (ranking["epoch"] == 1).all() and (points["metric_value"] < 0.6).all()
    # at epoch 1 batch size decides; the schedule (which trials were stopped) does not
    assert ranking["setting"].tolist() == ["batch_size", "lr_schedule"]
    assert ranking.set_index("setting").loc["lr_schedule", "variance_share"] < 0.05
    whole, _ = sensitivity(_synthetic_trials(), ["lr"], metric="val_accuracy")
    assert (whole["epoch"] == 2).all()  # nobody stopped early: the last epoch


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_analysis_stage_writes_checked_tables_in_one_mlflow_run(tmp_path, store, monkeypatch):
    from mlflow import MlflowClient

    from sanode.pipeline import plots
    from sanode.pipeline import stages as pipeline

    monkeypatch.chdir(tmp_path)
    config = load_config("smoke")
    config["mlflow"] = {"tracking_uri": store, "experiment": "t"}
    del config["studies"]["mnist_winner"]  # a retrain searches nothing
    names = analyses.studies(config, "sensitivity")
    for study in names:  # the ranked settings are the searched ones
        config["studies"][study]["search_space"].update(lr=[0.001, 0.01], seed=[0, 1])
    trials = {s: str(tmp_path / f"{s}.parquet") for s in names}
    for i, path in enumerate(trials.values()):
        _synthetic_trials(seed=i).to_parquet(path)
    outputs = {k: str(tmp_path / f"{k}.parquet") for k in ("ranking", "points")}
    pipeline.analysis_stage(config, "sensitivity", {"trials": list(trials.values())}, outputs)
    ranking = pd.read_parquet(outputs["ranking"])
    assert set(ranking["study"]) == set(names)
    assert (ranking.groupby("study")["setting"].first() == "lr").all()
    run_id = ranking["mlflow_run_id"].unique().item()
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["bins"] == "4"
    assert run.data.tags["sanode.analysis"] == "sensitivity"
    assert len(client.list_artifacts(run_id, "tables")) == 2

    drawn = {}
    save = plots.save_figure

    def keep(fig, path):  # keep the figure to check its data, not its bytes
        drawn[Path(path).name] = fig
        save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    figures = {f"sensitivity_{s}": str(tmp_path / f"sensitivity_{s}.png") for s in names}
    pipeline.analysis_figures_stage(config, "sensitivity", outputs, figures)
    fig = drawn["sensitivity_letters.png"]
    bars = [p.get_width() for p in fig.axes[0].patches]
    letters = ranking[ranking["study"] == "letters"]
    assert bars == pytest.approx(letters["variance_share"].tolist())
    assert fig.axes[1].get_xlabel() == "lr" and fig.axes[1].get_xscale() == "log"
    points = pd.read_parquet(outputs["points"])
    lr = points[(points["study"] == "letters") & (points["setting"] == "lr")]
    dots = fig.axes[1].collections[0].get_offsets()
    assert sorted(dots[:, 0]) == pytest.approx(sorted(lr["numeric_value"]))
    assert sorted(dots[:, 1]) == pytest.approx(sorted(lr["metric_value"]))


def test_analysis_run_fails_in_mlflow_and_a_rerun_resumes_it(tmp_path, store, monkeypatch):
    from mlflow import MlflowClient

    from sanode.pipeline import stages as pipeline

    monkeypatch.chdir(tmp_path)
    config = load_config("smoke")
    config["mlflow"] = {"tracking_uri": store, "experiment": "t"}
    missing = [str(tmp_path / "nope.parquet")] * len(analyses.studies(config, "sensitivity"))
    outputs = {k: str(tmp_path / f"{k}.parquet") for k in ("ranking", "points")}
    with pytest.raises(FileNotFoundError):
        pipeline.analysis_stage(config, "sensitivity", {"trials": missing}, outputs)
    client = MlflowClient(tracking_uri=store)
    (failed,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert failed.info.status == "FAILED"
    for path in missing[:1]:
        _synthetic_trials().to_parquet(path)
    pipeline.analysis_stage(config, "sensitivity", {"trials": missing}, outputs)
    (run,) = client.search_runs([failed.info.experiment_id])
    assert run.info.run_id == failed.info.run_id and run.info.status == "FINISHED"


# -- tracking.run ------------------------------------------------------------------------------
def test_tracking_run_lifecycle(store):
    from mlflow import MlflowClient

    key = {"sanode.kind": "x", "sanode.name": "a"}
    with tracking.run(store, "e", key=key, name="a", tags={"t": "1"}) as run:
        run.log_params({"p": 1, "nested": {"q": 2}})
        first = run.run_id
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(first).info.status == "FINISHED"
    assert client.get_run(first).data.params == {"p": "1", "nested.q": "2"}
    with pytest.raises(RuntimeError), tracking.run(store, "e", key=key, name="a") as run:
        assert run.run_id == first  # resumed, not duplicated
        raise RuntimeError("boom")
    assert client.get_run(first).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt), tracking.run(store, "e", key=key, name="a"):
        raise KeyboardInterrupt
    assert client.get_run(first).info.status == "KILLED"
    # a run a killed process left RUNNING is closed before the next start
    exp = client.get_experiment_by_name("e").experiment_id
    other = tracking.start_or_resume_run(client, exp, key={**key, "sanode.name": "b"}, name="b")
    new = {**key, "sanode.name": "c"}
    with tracking.run(store, "e", key=new, name="c", stale={"sanode.kind": "x"},
                      parent={"sanode.name": "b"}) as run:  # fmt: skip
        assert client.get_run(other).info.status == "KILLED"
        assert client.get_run(run.run_id).data.tags["mlflow.parentRunId"] == other
    assert tracking.existing_run(store, "e", key).run_id == first
    assert tracking.existing_run(store, "e", {"sanode.kind": "none"}) is None


def test_a_study_begun_under_the_former_names_resumes(store, tmp_path):
    """A tune run an older release keyed ``sanode.kind=study`` / ``sanode.settings`` and its
    ``study-<digest>`` Ray folder are resumed, not started afresh."""
    from mlflow import MlflowClient

    from sanode.pipeline import layout

    client = MlflowClient(tracking_uri=store)
    exp = tracking.experiment_id(client, "e")
    old_key = {"sanode.study": "mnist", "sanode.settings": "ab12", "sanode.kind": "study"}
    old = client.create_run(exp, tags=old_key, run_name="study-mnist").info.run_id  # RUNNING
    new_key = {"sanode.study": "mnist", "sanode.digest": "ab12", "sanode.kind": "tune"}
    with tracking.run(store, "e", key=new_key, name="tune-mnist") as run:
        assert run.run_id == old  # the interrupted run goes on (closed as KILLED first)
        assert client.get_run(old).data.tags["sanode.closed_as"] == "KILLED"
    tags = client.get_run(old).data.tags
    assert {k: tags[k] for k in new_key} == new_key  # found under the current tags from now on
    assert tracking.existing_run(store, "e", {"sanode.study": "mnist", "sanode.kind": "tune"})
    assert len(client.search_runs([exp])) == 1
    # the evaluation's parent lookup finds it as well
    assert tracking.find_run(client, exp, {"sanode.kind": "tune", "sanode.study": "mnist"}) == old
    # Ray's experiment folder: the former one while it alone exists, else the current name
    assert layout.tune_experiment(tmp_path, "ab12") == tmp_path / "tune-ab12"
    (tmp_path / "study-ab12").mkdir()
    assert layout.tune_experiment(tmp_path, "ab12") == tmp_path / "study-ab12"
    (tmp_path / "tune-ab12").mkdir()
    assert layout.tune_experiment(tmp_path, "ab12") == tmp_path / "tune-ab12"


# -- one evaluation path -----------------------------------------------------------------------
def test_cli_evaluate_reproduces_the_pipeline_evaluation(tmp_path, capsys):
    from sanode.cli import main
    from sanode.data.datasets import load_split
    from sanode.pipeline.robustness import score
    from sanode.training.checkpoint import load_model

    ckpt = tmp_path / "m.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                "letters",
                "--letters-copies",
                "4",
                "--epochs",
                "2",
                "--batch-size",
                "10",
                "--t-eval",
                "10",
                "--quiet",
                "--out",
                str(ckpt),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--eps-test", "0.2", "0.6", "--seed", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    model, cfg, _ = load_model(ckpt)
    split = load_split(cfg, "test", letters_eps=0.0)
    settings = EvaluateSettings(eps_test=(0.2, 0.6), seed=3)
    pipeline_rows = score(model, cfg, split.x, split.y, settings).accuracy
    assert list(rows[0]) == list(pipeline_rows.columns)  # nearest_accuracy, work_fraction, ...
    for row, (_, expected) in zip(rows, pipeline_rows.iterrows(), strict=True):
        for key, value in row.items():
            assert value == pytest.approx(expected[key]), key
    assert torch.is_tensor(model.patterns)


def test_score_keeps_each_scored_cell_and_reads_it_back(tmp_path, monkeypatch, caplog):
    """With a cache folder, a second scoring (a stopped evaluation rerun, or carried to another
    machine) reads every cell but the first from it and gives the same tables; another model,
    other test data or another setting finds none of them."""
    from sanode import block_patterns
    from sanode.config import TrainConfig
    from sanode.pipeline import robustness
    from sanode.training.checkpoint import model_from_config

    cfg = TrainConfig(dataset="letters", dt=0.1, t_eval=3.0)
    patterns = block_patterns(12, 3, cfg.a)
    model = model_from_config(cfg, patterns)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    y = torch.arange(40) % 3
    settings = EvaluateSettings(eps_test=(0.0, 0.3, 0.6), noise_seeds=2, mse_items=5, mse_every=5)
    fresh = robustness.score(model, cfg, x, y, settings)
    first = robustness.score(model, cfg, x, y, settings, cache=tmp_path / "scores")
    assert len(list((tmp_path / "scores").glob("*.pt"))) == 5  # 2 draws x 3 levels - the first
    scored = []
    real = robustness._score_cell
    monkeypatch.setattr(
        robustness, "_score_cell", lambda *a, **k: scored.append(a[4:6]) or real(*a, **k)
    )
    with caplog.at_level("INFO", logger="sanode.pipeline.robustness"):
        again = robustness.score(model, cfg, x, y, settings, cache=tmp_path / "scores")
    assert scored == [(0, 0)]  # only the first cell, whose states are not kept
    progress = [r.getMessage() for r in caplog.records]  # one line per cell, in the log
    assert len(progress) == 6 and sum("(read back)" in line for line in progress) == 5
    assert progress[-1].startswith("eps_test 0.6, noise draw 1 (cell 6/6): H ")
    for res in (first, again):
        pd.testing.assert_frame_equal(res.accuracy, fresh.accuracy)
        pd.testing.assert_frame_equal(res.mse, fresh.mse)
        assert torch.equal(res.states["final"], fresh.states["final"])
    scored.clear()
    other = model_from_config(dataclasses.replace(cfg, seed=cfg.seed + 1), patterns)
    robustness.score(other, cfg, x, y, settings, cache=tmp_path / "scores")
    robustness.score(model, cfg, x.flip(0), y.flip(0), settings, cache=tmp_path / "scores")
    longer = dataclasses.replace(settings, t_eval=6.0)
    robustness.score(model, cfg, x, y, longer, cache=tmp_path / "scores")
    assert len(scored) == 3 * 6


def test_baselines_keep_each_fit_and_read_it_back(tmp_path, monkeypatch):
    """A rerun of the baselines analysis (stopped, or carried to another machine) fits only the
    baselines it lacks and gives the same table; other settings fit again."""
    from sanode.config import TrainConfig
    from sanode.data.prepare import prepare_dataset
    from sanode.probes import baselines as probes

    monkeypatch.chdir(tmp_path)
    config = load_config("smoke")
    config["studies"] = {"letters": config["studies"]["letters"]}
    config["analyses"] = {"baselines": {"epochs": 3, "batch_size": 25, "patience": 2}}
    data = str(tmp_path / "letters.pt")
    prepare_dataset(TrainConfig(dataset="letters", letters_copies=4), data, val_fraction=0.25)
    analysis = analyses.get("baselines")
    fits = []
    real = probes.train_baseline
    monkeypatch.setattr(
        probes, "train_baseline", lambda *a, **k: fits.append(a[0]) or real(*a, **k)
    )

    def run(settings: dict) -> pd.DataFrame:
        ctx = analyses.Context(config=config, data={"letters": data})
        return analysis.run(analysis.Settings(**settings), ctx).tables["baselines"]

    first = run(config["analyses"]["baselines"])
    assert len(fits) == 2 * 2  # two eps_train x (logistic, mlp)
    kept = sorted(Path(layout.scores_dir("letters", "baselines")).glob("*.parquet"))
    assert len(kept) == 4
    kept[0].unlink()  # as if stopped before its last fit
    fits.clear()
    again = run(config["analyses"]["baselines"])
    assert len(fits) == 1
    pd.testing.assert_frame_equal(again, first)
    fits.clear()
    run({**config["analyses"]["baselines"], "lr": 0.01})
    assert len(fits) == 4


# -- the study figures ---------------------------------------------------------------------------
def test_tuning_figure_shows_best_so_far_and_the_setting_heatmap(tmp_path, monkeypatch):
    from sanode.pipeline import plots

    trials = _trials(
        [
            ("a", 0.0, 0.1, 0, [(1, 0.5), (2, 0.6)], "TERMINATED"),
            ("b", 0.0, 0.1, 1, [(1, 0.8)], "TERMINATED"),
            ("c", 0.0, 0.2, 0, [(1, 0.9)], "TERMINATED"),
            ("d", 0.3, 0.1, 0, [(1, 0.99)], "ERROR"),  # counted as failed, not drawn
            ("e", 0.3, 0.2, 0, [(1, 0.4), (2, 0.3)], "TERMINATED"),
        ]
    ).assign(study="letters")
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.setdefault("fig", fig))
    plots.tuning_curves(trials, "letters", "val_accuracy", tmp_path / "t.png")
    a, b = drawn["fig"].axes[:2]
    assert a.get_title() == "(a) 4 finished trials, 1 failed"
    dots = a.collections[0].get_offsets()
    assert dots[:, 1].tolist() == pytest.approx([0.6, 0.8, 0.9, 0.3])  # creation order
    assert a.lines[0].get_ydata().tolist() == pytest.approx([0.6, 0.8, 0.9, 0.9])  # best so far
    # heatmap: rows eps_train, columns the setting without the seed (seeds averaged)
    assert [t.get_text() for t in b.get_xticklabels()] == ["lr=0.1", "lr=0.2"]
    cells = b.collections[0].get_array().reshape(2, 2)
    assert cells[0].tolist() == pytest.approx([0.7, 0.9]) and cells[1, 1] == pytest.approx(0.3)
    assert np.ma.is_masked(cells[1, 0])  # no finished trial at eps_train 0.3, lr 0.1
    # one trial (nothing searched): its learning curve instead
    one = trials[trials["trial_id"] == "a"].assign(learning_rate=[0.01, 0.005])
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.update(one=fig))
    plots.tuning_curves(one, "letters", "val_accuracy", tmp_path / "one.png")
    curve, lr = drawn["one"].axes
    assert curve.lines[0].get_ydata().tolist() == pytest.approx([0.5, 0.6])
    assert lr.lines[0].get_ydata().tolist() == pytest.approx([0.01, 0.005])
    assert curve.get_xlabel() == "epoch" and "final val_accuracy 0.6000" in curve.get_title()
