"""MLflow tracking: a SQLite store under the project by default, explicit client calls only.

Every run carries provenance tags (git revision, package versions, python) and the
``sanode.*`` tags that tie it to a study, a trial or a pipeline rule. Every pipeline run's
lifecycle is :func:`run`: close what a killed process left RUNNING, start or resume the run
its key tags identify, FAILED on an error, KILLED on an interruption, FINISHED on exit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run_keys import find_run as find_run
from .run_keys import mark_stale_runs as mark_stale_runs
from .run_keys import start_or_resume_run as start_or_resume_run
from .tracking_tags import MAX_PARAM_LENGTH as MAX_PARAM_LENGTH
from .tracking_tags import flatten as flatten
from .tracking_tags import git_revision as git_revision
from .tracking_tags import log_datasets as log_datasets
from .tracking_tags import precision_tags as precision_tags
from .tracking_tags import provenance_tags as provenance_tags

DEFAULT_STORE = "mlflow.db"

_FIX = (
    "set mlflow.tracking_uri in the config (or $MLFLOW_TRACKING_URI) to a writable "
    "sqlite:////absolute/path/mlflow.db or a reachable http://host:port server"
)


class TrackingStoreError(ValueError):
    """The MLflow store cannot be used; the message names the URI and what to change."""


def resolve_tracking_uri(configured: str | None, project_root: str | os.PathLike) -> str:
    """``$MLFLOW_TRACKING_URI``, else the configured URI, else ``sqlite:///<root>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        return f"sqlite:///{(Path(project_root).resolve() / DEFAULT_STORE)}"
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingStoreError(
            f"MLflow tracking URI {uri!r} is a file store, which MLflow 3 refuses; use a "
            "database (sqlite:////absolute/path/mlflow.db) or a server (http://host:5000)"
        )
    return uri


def check_store(uri: str, *, timeout: float = 5.0) -> None:
    """Fail fast (within ``timeout`` seconds) when the store cannot work, instead of MLflow's
    minutes of retries: a SQLite file that cannot be written or read, an unreachable server."""
    if uri.startswith("sqlite:///"):
        import sqlite3

        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        folder = path.parent
        if not folder.is_dir():
            raise TrackingStoreError(f"MLflow store {uri}: folder {folder} does not exist; {_FIX}")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise TrackingStoreError(f"MLflow store {uri}: {path} is not writable; {_FIX}")
        try:
            with sqlite3.connect(path, timeout=timeout) as conn:
                conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as err:
            raise TrackingStoreError(f"MLflow store {uri}: {err}; {_FIX}") from None
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        except (urllib.error.URLError, OSError) as err:
            message = f"MLflow server {uri} is not reachable ({err}); {_FIX}"
            raise TrackingStoreError(message) from None


_QUICK = {  # MLflow's HTTP client otherwise retries a refused request for about two minutes
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@contextlib.contextmanager
def quick_requests() -> Iterator[None]:
    """MLflow HTTP calls inside give up after one retry and a 10 s timeout (unless the
    environment sets these ``MLFLOW_HTTP_REQUEST_*`` values itself): for calls that must not
    stall the work around them while a tracking server is away."""
    added = {k: v for k, v in _QUICK.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def wait_for_store(uri: str, wait_s: float, *, every: float = 5.0) -> None:
    """Return once the store at ``uri`` answers; raise :class:`TrackingStoreError` (naming
    the URI) when it has not answered for ``wait_s`` seconds."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            check_store(uri, timeout=min(every, 5.0))
            return
        except TrackingStoreError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(min(every, max(0.0, deadline - time.monotonic())) or 0.1)


def short_error(err: BaseException) -> str:
    """The first line of an error, cut to 200 characters (MLflow's are pages long)."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


_checked: set[str] = set()


def client(uri: str):
    """An ``MlflowClient`` for ``uri``, whose store is checked once per process first.

    A SQLite store is created (or its schema upgraded) under a file lock beside it, so two
    studies that start at once against a new store do not both run MLflow's migrations,
    and it is switched to write-ahead logging (readers no longer block a writer)."""
    from mlflow import MlflowClient

    if uri not in _checked:
        check_store(uri)
        if uri.startswith("sqlite:///"):
            _initialise_sqlite(uri)
        _checked.add(uri)
    return MlflowClient(tracking_uri=uri)


def _initialise_sqlite(uri: str) -> None:
    import sqlite3

    from filelock import FileLock
    from mlflow import MlflowClient

    path = Path(uri.removeprefix("sqlite:///"))
    with FileLock(str(path) + ".lock", timeout=300):
        # the first client of a process creates (or migrates) the schema
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


# MLflow 3's UI opens an experiment by its kind: training runs, not the GenAI overview
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(mlflow_client, name: str) -> str:
    """The id of experiment ``name``, created as a model-training experiment if missing (an
    existing experiment without a kind gets it)."""
    from mlflow.exceptions import MlflowException

    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        try:
            return mlflow_client.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
        except MlflowException:  # another process created it just now
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND[0] not in exp.tags:
        mlflow_client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    return exp.experiment_id


def log_params(mlflow_client, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in flatten(params).items()]
    for start in range(0, len(items), 100):
        mlflow_client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(mlflow_client, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if items:
        mlflow_client.log_batch(run_id, metrics=items)


@dataclass(frozen=True)
class Run:
    """An open MLflow run: its client, experiment and id, and the calls the pipeline makes."""

    client: Any
    experiment_id: str
    run_id: str
    uri: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        log_params(self.client, self.run_id, params)

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        log_metrics(self.client, self.run_id, metrics, step=step)

    def log_artifact(self, path: str | os.PathLike, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_datasets(self, meta: Mapping[str, Any], source: str, splits: Mapping[str, Any]):
        log_datasets(self.client, self.run_id, meta, source, splits)

    def log_model(
        self, model, *, registered: str, signature: tuple[int, int], tags: Mapping[str, Any]
    ) -> str:
        """Log ``model`` (a ``torch.nn.Module``) with ``mlflow.pytorch.log_model`` under this
        run (signature: float32 (-1, in) -> (-1, out)), with the ``sanode`` package as its
        code, register it as a new version of ``registered`` tagged with ``tags``; returns
        the version."""
        import mlflow
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        n_in, n_out = signature
        sig = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_in))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_out))]),
        )
        # the pytorch flavour logs through MLflow's fluent API, whose global URI (and the
        # environment variable it sets) is restored afterwards
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.uri)
        try:
            with mlflow.start_run(run_id=self.run_id):
                info = mlflow.pytorch.log_model(
                    model,
                    name="model",
                    signature=sig,
                    registered_model_name=registered,
                    code_paths=[str(Path(__file__).resolve().parent)],
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
                    await_registration_for=60,
                    serialization_format="pickle",  # forward has data-dependent early exit
                )
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # back to the environment's
            if previous is not None:
                os.environ["MLFLOW_TRACKING_URI"] = previous
        version = str(info.registered_model_version)
        for key, value in tags.items():
            self.client.set_model_version_tag(registered, version, key, str(value))
        return version

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value)[:MAX_PARAM_LENGTH])


@contextlib.contextmanager
def run(
    uri: str,
    experiment: str,
    *,
    key: Mapping[str, str],
    name: str,
    tags: Mapping[str, str] | None = None,
    stale: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | str | None = None,
) -> Iterator[Run]:
    """The lifecycle of one pipeline run, the run identified by its ``key`` tags.

    Closes (as KILLED) the runs with the ``stale`` tags (default: ``key``) that a killed
    process left RUNNING, resumes the run of ``key`` (back to RUNNING) or creates it with
    ``tags`` under ``parent`` (a run id, or the key tags of the parent run), yields it, and
    ends it FINISHED, or FAILED on an exception, or KILLED on an interruption (Ctrl-C).
    """
    mlflow_client = client(uri)
    exp_id = experiment_id(mlflow_client, experiment)
    closed = mark_stale_runs(mlflow_client, exp_id, stale or key)
    if closed:
        import logging

        logging.getLogger(__name__).warning(
            "marked %d MLflow run(s) left RUNNING by an interrupted run as KILLED", len(closed)
        )
    parent_id = find_run(mlflow_client, exp_id, parent) if isinstance(parent, Mapping) else parent
    run_id = start_or_resume_run(
        mlflow_client, exp_id, key=key, name=name, tags=tags, parent_run_id=parent_id
    )
    try:
        yield Run(mlflow_client, exp_id, run_id, uri)
    except KeyboardInterrupt:
        _close_quietly(mlflow_client, run_id, "KILLED")
        raise
    except BaseException:
        _close_quietly(mlflow_client, run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run_id, status="FINISHED")


def _close_quietly(mlflow_client, run_id: str, status: str) -> None:
    """End a run whose work failed without letting an unreachable store hide why it failed
    (the next run of the same key closes what is left RUNNING)."""
    try:
        with quick_requests():
            mlflow_client.set_terminated(run_id, status=status)
    except Exception as err:  # the store is the problem: the original error matters more
        import logging

        message = "could not mark MLflow run %s %s (%s); the next run of the stage closes it"
        logging.getLogger(__name__).warning(message, run_id, status, short_error(err))


def existing_run(uri: str, experiment: str, key: Mapping[str, str]) -> Run | None:
    """The newest run with the ``key`` tags (to attach files to it), ``None`` if none."""
    mlflow_client = client(uri)
    exp_id = experiment_id(mlflow_client, experiment)
    run_id = find_run(mlflow_client, exp_id, key)
    return None if run_id is None else Run(mlflow_client, exp_id, run_id, uri)
