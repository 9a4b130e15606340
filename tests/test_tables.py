import pandas as pd
import pytest

from sanode.pipeline import tables
from sanode.pipeline.tracking import flatten, log_datasets, resolve_tracking_uri


def _accuracy_row(**changes):
    row = {
        "study": "s",
        "dataset": "letters",
        "eps_train": 0.0,
        "eps_test": 0.1,
        "noise_seed": 0,
        "train_seed": 0,
        "is_best": True,
        "n": 10,
        "exact": 8,
        "partial": 1,
        "wrong": 1,
        "accuracy": 0.9,
        "nearest_accuracy": 0.9,
        "m_f": 0.95,
        "m_f_std": 0.1,
        "mse": 0.2,
        "work_fraction": 1.0,
        "t_eval": 40.0,
        "trial_id": "t",
        "mlflow_run_id": "r",
    }
    row.update(changes)
    return pd.DataFrame([row])


def test_schema_accepts_documented_table_and_names_missing_column(tmp_path):
    frame = _accuracy_row()
    tables.check_schema(frame, "accuracy")
    with pytest.raises(tables.SchemaError, match="lacks column 'mlflow_run_id'"):
        tables.check_schema(frame.drop(columns="mlflow_run_id"), "accuracy")
    with pytest.raises(tables.SchemaError, match="'exact' has kind"):
        tables.check_schema(_accuracy_row(exact="many"), "accuracy")
    frame.to_parquet(tmp_path / "a.parquet")
    _accuracy_row(eps_test=0.2).to_parquet(tmp_path / "b.parquet")
    both = tables.concat_tables([tmp_path / "a.parquet", tmp_path / "b.parquet"], "accuracy")
    assert both["eps_test"].tolist() == [0.1, 0.2]


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri("sqlite:////x.db", tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ValueError, match="file store"):
        resolve_tracking_uri("file:///tmp/mlruns", tmp_path)
    assert flatten({"a": {"b": 1}, "c": None}) == {"a.b": "1", "c": "None"}


class _RacingClient:
    """An MLflow client whose first ``failures`` log_inputs calls lose the insert race."""

    def __init__(self, failures: int, message: str) -> None:
        self.failures, self.message, self.calls, self.logged = failures, message, 0, []

    def log_inputs(self, run_id, datasets):
        from mlflow.exceptions import MlflowException

        self.calls += 1
        if self.calls <= self.failures:
            raise MlflowException(self.message)
        self.logged.append((run_id, [d.dataset.name for d in datasets]))


def test_dataset_logging_retries_the_insert_race_of_two_jobs():
    race = ("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
            "datasets.name, datasets.digest")  # fmt: skip
    meta = {"dataset": "letters", "raw_md5": {"prepared": "abc"}, "sizes": {"test": 500}}
    client = _RacingClient(1, race)
    log_datasets(client, "run", meta, "data/prepared/letters.pt", {"test": 0.3})
    assert client.calls == 2 and client.logged == [("run", ["letters-test"])]
    # a race that does not end, or any other store error, is raised as it is
    for failures, message in ((3, race), (1, "database is unreachable")):
        client = _RacingClient(failures, message)
        with pytest.raises(Exception, match=message[:20].replace("(", r"\(")):
            log_datasets(client, "run", meta, "data/prepared/letters.pt", {"test": 0.3})
        assert client.logged == [] and client.calls == (3 if message == race else 1)
