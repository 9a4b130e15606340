"""Hyperparameter and training-noise studies with Ray Tune (every Ray call lives here).

One Ray Tune experiment per study (data set). Each trial is :func:`trainable`: a function of
the sampled parameters that trains one epoch at a time, reports its metrics after every epoch
and keeps its own checkpoint (``<storage>/trials/<trial_id>/model.pt``, written atomically
after each report), from which a restarted trial continues. Tune's own checkpoint registry is
not used: after a kill its experiment snapshot can name checkpoints it has already deleted.
MLflow logging happens on the driver in :class:`MlflowTrialCallback` (one child run per
trial under the study's run), so the tracking store has a single writer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import ray as _ray
from ray import tune

from .. import files
from ..config import TrainConfig
from ..core.noise import add_pixel_noise, validation_generator
from ..data.prepare import load_prepared
from ..training.checkpoint import load_checkpoint
from ..training.train import DivergenceError, train
from . import layout, selection, tracking
from .study import StudySettings

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"


class StudyInterrupted(KeyboardInterrupt):
    """The study was stopped (Ctrl-C / SIGINT); finished epochs are kept, a rerun resumes."""


class RestoreHintFilter(logging.Filter):
    """Drops Ray Tune's "Resume experiment with: Tuner.restore(...)" advice on an interrupt:
    a user of the pipeline resumes by rerunning the same command (:class:`StudyInterrupted`
    says so), not by calling Ray."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


_RESTORE_HINT = RestoreHintFilter()


def _param_space(space: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            out[key] = tune.grid_search(spec)
        elif isinstance(spec, Mapping) and len(spec) == 1:
            ((kind, args),) = spec.items()
            if kind == "loguniform":
                out[key] = tune.loguniform(*args)
            elif kind == "uniform":
                out[key] = tune.uniform(*args)
            elif kind == "randint":
                out[key] = tune.randint(*args)
            elif kind == "choice":
                out[key] = tune.choice(list(args))
            else:
                raise ValueError(
                    f"search_space.{key}: unknown sampler {kind!r}; use a list "
                    "(grid), loguniform, uniform, randint or choice"
                )
        else:
            out[key] = spec  # a constant
    return out


def _scheduler(spec: Mapping[str, Any], epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    name = spec.get("name", "fifo")
    if name == "fifo":
        return FIFOScheduler()
    if name == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            max_t=epochs,
            grace_period=int(spec.get("grace_period", 1)),
            reduction_factor=float(spec.get("reduction_factor", 2)),
        )
    raise ValueError(f"scheduler {name!r} is not one of ['fifo', 'asha']")


def _search_alg(spec: Mapping[str, Any], metric: str, mode: str):
    """``None`` (Ray's variant generator: grids, random sampling) or Optuna's TPE sampler,
    seeded, optionally limited to ``max_concurrent`` suggestions at a time."""
    if spec.get("name", "basic") == "basic":
        return None
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric=metric, mode=mode, seed=int(spec.get("seed", 0)))
    limit = spec.get("max_concurrent")
    return ConcurrencyLimiter(searcher, max_concurrent=int(limit)) if limit else searcher


FAILED_FILE = "diverged.txt"  # beside a trial's checkpoint: why it diverged


def trial_checkpoint(state_dir: str | os.PathLike, trial_id: str) -> Path:
    """Where trial ``trial_id`` keeps its checkpoint."""
    return Path(state_dir) / trial_id / CHECKPOINT_FILE


def trainable(
    params: dict, *, base: dict, data_path: str, val_eps: float | None, state_dir: str
) -> None:
    """One trial: continue from its own checkpoint if any, train, report every epoch."""
    cfg = TrainConfig.from_dict({**base, **params})
    data = load_prepared(data_path)
    x, y = data.split("train")
    xv, yv = data.split("val")
    eps_val = cfg.eps_train if val_eps is None else val_eps
    xv = add_pixel_noise(xv, eps_val, validation_generator(cfg.seed))
    ckpt_file = trial_checkpoint(state_dir, tune.get_context().get_trial_id())
    failed = ckpt_file.with_name(FAILED_FILE)
    if failed.is_file():  # a restart (lost worker, resumed study) of a trial that diverged
        raise DivergenceError(f"{failed.read_text()} (recorded by an earlier attempt)")

    def report(epoch: int, record: dict, model) -> None:
        tune.report(dict(record))

    try:
        train(
            cfg,
            x,
            y,
            data.patterns,
            val=(xv, yv),
            checkpoint_path=ckpt_file,
            resume=True,
            callback=report,
            progress=False,
        )
    except DivergenceError as err:
        # deterministic: a restart would diverge again, so it fails at once instead
        files.write_text(failed, str(err), what="failure record")
        raise


class MlflowTrialCallback(tune.Callback):
    """Driver-side MLflow logging: one child run per trial, per-epoch metrics, final status.

    Best effort while the study runs: a call the store does not answer (a tracking server
    that went away) is given up after one quick retry, with one warning, and the calls of
    the next ``OFFLINE_S`` seconds are skipped, so training never waits on MLflow. What is
    missed is logged from the trials' checkpoints once the study ends (:func:`_reconcile`).
    """

    OFFLINE_S = 20.0

    def __init__(
        self,
        uri: str,
        exp_id: str,
        parent_run_id: str,
        settings: StudySettings,
        base: dict,
        tags: dict[str, str],
        state_dir: str,
        data_path: str,
        meta: dict[str, Any],
    ):
        self.uri, self.exp_id, self.parent, self.study = uri, exp_id, parent_run_id, settings.name
        self.base, self.state_dir, self.data_path, self.meta = base, state_dir, data_path, meta
        self.searched = sorted(settings.search_space)
        self.tags = {**tags, "sanode.searched": ",".join(self.searched)}
        self.search = {
            "searched": ",".join(self.searched),
            "metric": settings.metric,
            "mode": settings.mode,
            "scheduler": json.dumps(settings.scheduler),
            "searcher": json.dumps(settings.searcher),
            "num_samples": settings.num_samples,
        }
        self.val_eps = settings.val_eps
        self.runs: dict[str, str] = {}
        self._client = None
        self._offline_until = 0.0
        self.missed = 0  # calls skipped or failed while the store was away

    def __getstate__(self):  # Tune pickles its run config; the client is rebuilt lazily
        return {**self.__dict__, "_client": None, "_offline_until": 0.0}

    @property
    def client(self):
        if self._client is None:
            self._client = tracking.client(self.uri)
        return self._client

    def run_id(self, trial) -> str:
        return self.run_id_of(trial.trial_id, trial.config)

    def run_id_of(self, trial_id: str, config: dict) -> str:
        """The MLflow run of trial ``trial_id`` (created or resumed, and described, once)."""
        if trial_id not in self.runs:
            run_id = tracking.start_or_resume_run(
                self.client,
                self.exp_id,
                key={"sanode.study": self.study, "sanode.trial_id": trial_id},
                name=f"{self.study}-{trial_id}",
                tags={**self.tags, "sanode.rule": "tune", "sanode.kind": "trial"},
                parent_run_id=self.parent,
            )
            if not self.client.get_run(run_id).data.params:  # new, or cut off mid-way
                self._describe(run_id, config)
            self.runs[trial_id] = run_id
        return self.runs[trial_id]

    def _describe(self, run_id: str, config: dict) -> None:
        """The trial's complete resolved training configuration (every TrainConfig field,
        defaults included) and the search settings as params, its data as dataset inputs."""
        cfg = TrainConfig.from_dict({**self.base, **config})
        params = {**cfg.to_dict(), **{f"search.{k}": v for k, v in self.search.items()}}
        tracking.log_params(self.client, run_id, params)
        eps_val = cfg.eps_train if self.val_eps is None else self.val_eps
        splits = {"train": cfg.eps_train, "val": eps_val}
        tracking.log_datasets(self.client, run_id, self.meta, self.data_path, splits)

    def _safely(self, call) -> None:
        """``call()`` unless the store is away; a failure starts an offline spell."""
        now = time.monotonic()
        if now < self._offline_until:
            self.missed += 1
            return
        try:
            with tracking.quick_requests():
                call()
        except Exception as err:  # MLflow, requests and socket errors alike
            self.missed += 1
            self._offline_until = now + self.OFFLINE_S
            log.warning(
                "MLflow store %s did not answer (%s); training goes on, and what is not "
                "logged now is logged from the trials' checkpoints when the study ends",
                self.uri,
                tracking.short_error(err),
            )

    def on_trial_start(self, iteration, trials, trial, **info):
        self._safely(lambda: self.run_id(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metrics = {k: v for k, v in result.items() if k in _METRIC_KEYS or k.startswith("val_")}
        step = int(result.get("epoch", 0))
        self._safely(lambda: tracking.log_metrics(self.client, self.run_id(trial), metrics, step))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(lambda: self.finish(trial.trial_id, trial.config, error_file=None))

    def on_trial_error(self, iteration, trials, trial, **info):
        error_file = str(getattr(trial, "error_file", ""))
        self._safely(lambda: self.finish(trial.trial_id, trial.config, error_file=error_file))

    def finish(self, trial_id: str, config: dict, *, error_file: str | None) -> None:
        """The trial's final status (FAILED with ``error_file``, else FINISHED) and its
        checkpoint as an artifact (once)."""
        run_id = self.run_id_of(trial_id, config)
        ckpt = trial_checkpoint(self.state_dir, trial_id)
        run = self.client.get_run(run_id)
        if ckpt.is_file() and "sanode.checkpoint_logged" not in run.data.tags:
            # what the trial's precision settings meant on its node, and the times measured
            record = files.load_checkpoint(ckpt).get("precision")
            for key, value in tracking.precision_tags(record).items():
                self.client.set_tag(run_id, key, value)
            self.client.log_artifact(run_id, str(ckpt), artifact_path="checkpoint")
            self.client.set_tag(run_id, "sanode.checkpoint_logged", "1")
        if error_file is not None:
            self.client.set_tag(run_id, "sanode.error_file", error_file)
        self.client.set_terminated(run_id, status="FINISHED" if error_file is None else "FAILED")


_METRIC_KEYS = {"epoch", "train_loss", "gamma", "learning_rate"}


def _short_tmpdir(project_root: Path) -> str:
    """RAY_TMPDIR inside the project when its path is short enough for Unix sockets."""
    candidate = project_root / ".ray"
    if len(str(candidate)) <= 40:
        candidate.mkdir(parents=True, exist_ok=True)
        return str(candidate)
    return tempfile.mkdtemp(prefix="sray")


_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _require_token(token: str) -> dict[str, str | None]:
    """Token authentication with ``token`` for the local Ray this process starts (its child
    processes inherit the environment). Ray caches
    the mode and the token per process, so both caches are refreshed. Returns the previous
    values of the variables (to restore them with :func:`_restore_auth`)."""
    before = {k: os.environ.get(k) for k in _AUTH_VARS}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    _refresh_auth()
    return before


def _restore_auth(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _refresh_auth()


def _refresh_auth() -> None:
    try:  # Ray 2.60's own refresh (ray._private.authentication); absent elsewhere
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without these reads the environment
        pass


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int, project_root: Path, num_gpus: int | None = None
) -> Iterator[None]:
    """Connect to ``address`` (or ``$RAY_ADDRESS``), else start a local Ray of ``num_cpus``
    whose every gRPC request must carry a random token of this session (token auth); shut
    it down (and restore the environment) on exit."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        _ray.init(address=address, log_to_driver=False)
        try:
            yield
        finally:
            _ray.shutdown()
        return
    os.environ.setdefault("RAY_TMPDIR", _short_tmpdir(project_root))
    # Ray 2.60 cannot bind a local cluster to loopback (it resolves 127.0.0.1 to the node's
    # address and its gRPC servers listen on every interface), so the embedded Ray requires
    # a fresh random token of this session on every request: nothing else can talk to it.
    before = _require_token(secrets.token_hex(32))
    kwargs: dict[str, Any] = {
        "num_cpus": num_cpus,
        "include_dashboard": False,
        "log_to_driver": False,
    }
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    try:
        _ray.init(**kwargs)
        yield
    finally:
        _ray.shutdown()
        _restore_auth(before)


def run_study(
    settings: StudySettings,
    *,
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    storage_dir: str | os.PathLike,
    tracking_uri: str,
    experiment: str = "sanode",
    ray_address: str | None = None,
    num_cpus: int = 1,
    project_root: str | os.PathLike = ".",
    tracking_wait_s: float = 300.0,
) -> pd.DataFrame:
    """Run (or resume) a study and write its outputs under ``out_dir``.

    Writes ``trials.parquet`` (one row per trial and epoch), ``best.json`` and, for every
    eps_train of the grid, the best trial's checkpoint ``best/eps_train=<eps>.pt``.
    An interrupted study resumes with ``Tuner.restore``: finished trials are not recomputed,
    unfinished ones continue from their last epoch. Errored trials resume from their last
    checkpoint too: a kill can leave a running trial recorded as errored (a trial that
    really diverged fails again at once: its divergence is recorded beside its checkpoint).
    A trial whose worker process or Ray node is lost is restarted (``max_failures`` times)
    and continues from its checkpoint. An MLflow store that goes away mid-study does not stop
    the trials; at the end the study waits up to ``tracking_wait_s`` seconds for it and then
    logs what it missed from the checkpoints (or fails with one line saying how to resume).
    """
    project_root = Path(project_root).resolve()
    out_dir, storage_dir = Path(out_dir).resolve(), Path(storage_dir).resolve()
    # one Ray experiment (and MLflow study run) per set of settings: a changed search space
    # starts afresh instead of restoring (or colliding with) the old one
    digest = settings.digest()
    state_dir = storage_dir / f"trials-{digest}"  # each trial's own checkpoint
    data_path = str(Path(data_path).resolve())
    tags = tracking.provenance_tags(project_root)
    meta = load_prepared(data_path).meta
    with tracking.run(
        tracking_uri,
        experiment,
        key={"sanode.study": settings.name, "sanode.settings": digest, "sanode.kind": "study"},
        stale={"sanode.study": settings.name},
        name=f"study-{settings.name}",
        tags={**tags, "sanode.rule": "tune"},
    ) as study_run:
        study_run.log_params(
            {
                "base": settings.base,
                "search_space": json.dumps(settings.search_space),
                "num_samples": settings.num_samples,
                "metric": settings.metric,
                "mode": settings.mode,
                "scheduler": json.dumps(settings.scheduler),
                "searcher": json.dumps(settings.searcher),
            }
        )
        study_run.set_tags(
            {
                "sanode.data_sha256": meta.get("cache_sha256", ""),
                **{f"sanode.data_md5.{k}": v for k, v in meta.get("raw_md5", {}).items()},
            }
        )
        eps = float(settings.base.get("eps_train", 0.0))
        val = eps if settings.val_eps is None else settings.val_eps
        study_run.log_datasets(meta, data_path, {"train": eps, "val": val})
        return _run_tuner(
            settings,
            study_run=study_run,
            tags={**tags, "sanode.settings": digest},
            experiment_path=storage_dir / f"study-{digest}",
            state_dir=state_dir,
            data_path=data_path,
            meta=meta,
            out_dir=out_dir,
            tracking_uri=tracking_uri,
            tracking_wait_s=tracking_wait_s,
            ray=(ray_address, num_cpus, project_root),
        )


def _run_tuner(
    settings: StudySettings,
    *,
    study_run: tracking.Run,
    tags: dict[str, str],
    experiment_path: Path,
    state_dir: Path,
    data_path: str,
    meta: dict[str, Any],
    out_dir: Path,
    tracking_uri: str,
    tracking_wait_s: float,
    ray: tuple[str | None, int, Path],
) -> pd.DataFrame:
    """Run or restore the Ray experiment of ``settings`` and write the study's outputs.
    ``ray``: (cluster address or None, CPUs of a local Ray, project root)."""
    base = {**settings.base, "threads": settings.trial_threads, "device": "auto"}
    fn = tune.with_resources(
        tune.with_parameters(
            trainable,
            base=base,
            data_path=data_path,
            val_eps=settings.val_eps,
            state_dir=str(state_dir),
        ),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    client, exp_id = study_run.client, study_run.experiment_id
    callback = MlflowTrialCallback(
        tracking_uri,
        exp_id,
        study_run.run_id,
        settings,
        base,
        tags,
        str(state_dir),
        data_path,
        meta,
    )
    logging.getLogger("ray.tune.tune").addFilter(_RESTORE_HINT)  # once: filters are a set
    with ray_session(*ray):
        if tune.Tuner.can_restore(str(experiment_path)):
            log.info("resuming the interrupted study at %s", experiment_path)
            tuner = tune.Tuner.restore(
                str(experiment_path), trainable=fn, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                fn,
                param_space=_param_space(settings.search_space),
                tune_config=tune.TuneConfig(
                    metric=settings.metric,
                    mode=settings.mode,
                    num_samples=settings.num_samples,
                    scheduler=_scheduler(settings.scheduler, int(base.get("epochs", 10))),
                    search_alg=_search_alg(settings.searcher, settings.metric, settings.mode),
                ),
                run_config=tune.RunConfig(
                    name=experiment_path.name,
                    storage_path=str(experiment_path.parent),
                    callbacks=[callback],
                    failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                    verbose=1,
                ),
            )
        grid = tuner.fit()
        unfinished = unfinished_trials(experiment_path)
    if unfinished:
        # Tune catches SIGINT, saves its state and returns early: say so instead of
        # building tables from a partial study (tracking.run marks the study run KILLED)
        raise StudyInterrupted(
            f"study {settings.name} interrupted with {len(unfinished)} trial(s) unfinished; "
            f"every finished epoch is kept in {state_dir}. Rerun the same command to resume."
        )
    try:
        tracking.wait_for_store(tracking_uri, tracking_wait_s)
    except tracking.TrackingStoreError as err:
        raise tracking.TrackingStoreError(
            f"{err} (waited {tracking_wait_s:g} s at the end of study {settings.name}). Every "
            f"trial finished and is kept in {state_dir}: rerun the same command once the store "
            "answers; no trial is recomputed and their epochs are logged then"
        ) from None
    _reconcile(grid, callback)
    table = _trials_table(grid, settings, client, exp_id, state_dir)
    _backfill_metrics(client, table)
    _write_outputs(table, settings, out_dir, study_run)
    return table


def _reconcile(grid, callback: MlflowTrialCallback) -> None:
    """Every trial's MLflow run exists, is described and carries its final status and its
    checkpoint, whatever the live callback missed (a store that was away, a driver that was
    killed between a trial's end and its logging)."""
    for result in grid:
        if result.config is None:
            continue
        trial_id = _trial_id(result)
        error_file = str(Path(result.path) / "error.txt") if result.error else None
        callback.finish(trial_id, result.config, error_file=error_file)
    if callback.missed:
        message = "%d MLflow call(s) missed during the study: logged from the checkpoints"
        log.info(message, callback.missed)


def unfinished_trials(experiment_path: Path) -> list[str]:
    """Trial ids of the experiment that neither finished nor failed (an interrupted run)."""
    analysis = tune.ExperimentAnalysis(str(experiment_path))
    return [t.trial_id for t in analysis.trials if t.status not in ("TERMINATED", "ERROR")]


def _trials_table(
    grid, settings: StudySettings, client, exp_id: str, state_dir: Path
) -> pd.DataFrame:
    frames = []
    for result in grid:
        if result.config is None:  # never started (cannot happen after a complete fit)
            continue
        trial_id = _trial_id(result)
        ckpt = trial_checkpoint(state_dir, trial_id)
        if ckpt.is_file():
            # the trial's own checkpoint holds every epoch it completed; Ray's result files can
            # lack an epoch whose report was in flight when the driver was killed
            history = pd.DataFrame(load_checkpoint(ckpt)["history"])
        else:
            history = result.metrics_dataframe
        if history is None or history.empty:
            history = pd.DataFrame({"epoch": [0]})
        keep = [c for c in history.columns if c in _METRIC_KEYS or c.startswith("val_")]
        # an epoch repeated after a kill (reported, then killed before its checkpoint) is
        # recomputed deterministically: keep one row per epoch
        frame = history[keep].drop_duplicates("epoch", keep="last").copy()
        for key in settings.search_space:
            frame[f"param_{key}"] = result.config.get(key)
        frame["eps_train"] = float(
            result.config.get("eps_train", settings.base.get("eps_train", 0.0))
        )
        frame["trial_id"] = trial_id
        frame["status"] = "ERROR" if result.error else "TERMINATED"
        frame["checkpoint"] = str(ckpt) if ckpt.is_file() else None
        frame["mlflow_run_id"] = tracking.find_run(
            client, exp_id, {"sanode.study": settings.name, "sanode.trial_id": trial_id}
        )
        frame["study"] = settings.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _backfill_metrics(client, table: pd.DataFrame) -> None:
    """Log to MLflow the epochs a kill kept from the callback (Ray recorded them, MLflow not)."""
    metric_columns = [c for c in table.columns if c in _METRIC_KEYS or c.startswith("val_")]
    for run_id, rows in table.groupby("mlflow_run_id"):
        logged = {m.step for m in client.get_metric_history(run_id, "train_loss")}
        for _, row in rows[~rows["epoch"].isin(logged)].iterrows():
            values = {k: row[k] for k in metric_columns if pd.notna(row[k])}
            tracking.log_metrics(client, run_id, values, step=int(row["epoch"]))


def _write_outputs(
    table: pd.DataFrame, settings: StudySettings, out_dir: Path, study_run: tracking.Run
) -> None:
    """``trials.parquet``, the selected models (copied under ``best/``) and ``best.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = out_dir / "best"
    models.mkdir(exist_ok=True)
    files.write_parquet(out_dir / "trials.parquet", table)
    metric, mode = settings.metric, settings.mode
    selected = selection.select(
        table, metric=metric, mode=mode, eps_grid=settings.eps_train_grid(), study=settings.name
    )
    for s in selected:
        shutil.copy(s.checkpoint, layout.model_path(str(models), s.eps_train))
        for seed, (_, checkpoint) in s.seeds.items():
            shutil.copy(checkpoint, layout.model_path(str(models), s.eps_train, seed))
    failed = selection.failed_trials(table)
    record = selection.best_json(
        selected, metric=metric, mode=mode, models=str(models), failed=failed
    )
    files.write_json(out_dir / "best.json", record)
    study_run.log_artifact(out_dir / "trials.parquet", "tune")
    study_run.log_artifact(out_dir / "best.json", "tune")


def _trial_id(result) -> str:
    """The trial id of a Tune result (its last report's, else read from its folder name)."""
    return (result.metrics or {}).get("trial_id") or _trial_id_from_path(result.path)


def _trial_id_from_path(path: str) -> str:
    """``<experiment>_<5 hex>_<5 digits>`` in Ray's trial folder name, e.g. ``6bf0a_00003``."""
    match = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(path).name)
    if match is None:
        raise ValueError(f"cannot read a trial id from the Ray trial folder {path}")
    return match.group(1)
