"""Hyperparameter and training-noise studies with Ray Tune (every Ray call lives here).

One Ray Tune experiment per study (data set). Each trial is :func:`trainable`: a function of
the sampled parameters that trains one epoch at a time, reports its metrics after every epoch
and keeps its own checkpoint (``<storage>/trials-<digest>/<number>-<settings>/model.pt``,
written atomically before each report), from which a restarted trial continues, in this Ray
experiment or a new one. Tune's own checkpoint registry is not used: after a kill its
experiment snapshot can name checkpoints it has already deleted.
MLflow logging happens on the driver in :class:`~sanode.pipeline.trial_tracking.
MlflowTrialCallback` (one child run per trial under the study's run), so the tracking store
has a single writer; the Ray session (local or a cluster, tokens) is
:mod:`sanode.pipeline.ray_session`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from .. import files
from ..config import TrainConfig
from ..core.noise import add_pixel_noise, validation_generator
from ..data.prepare import load_prepared
from ..training.checkpoint import keep_weights_only
from ..training.train import DivergenceError, train
from . import layout, tracking
from .ray_session import ray_session
from .study import StudySettings
from .trial_tracking import (
    CHECKPOINT_FILE,
    FAILED_FILE,
    MlflowTrialCallback,
    trial_checkpoint,
)
from .tune_outputs import (
    _backfill_metrics,
    _reconcile,
    _trials_table,
    _write_outputs,
    unfinished_trials,
)

__all__ = [
    "CHECKPOINT_FILE",
    "FAILED_FILE",
    "MlflowTrialCallback",
    "StudyInterrupted",
    "ray_session",
    "run_study",
    "trainable",
    "trial_checkpoint",
]

log = logging.getLogger(__name__)


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


def trainable(
    params: dict, *, base: dict, data_path: str, val_eps: float | None, state_dir: str
) -> None:
    """One trial: continue from its own checkpoint if any, train, report every epoch. A trial
    whose checkpoint already holds every epoch (one a new Ray experiment finds finished)
    reports its last epoch once, so that its result carries the metric. A finished trial's
    checkpoint keeps its weights, config and history only (5 MB instead of 29 MB on MNIST)."""
    cfg = TrainConfig.from_dict({**base, **params})
    data = load_prepared(data_path)
    x, y = data.split("train")
    xv, yv = data.split("val")
    eps_val = cfg.eps_train if val_eps is None else val_eps
    xv = add_pixel_noise(xv, eps_val, validation_generator(cfg.seed))
    ckpt_file = trial_checkpoint(state_dir, tune.get_context().get_trial_id(), params)
    failed = ckpt_file.with_name(FAILED_FILE)
    if failed.is_file():  # a restart (lost worker, resumed study) of a trial that diverged
        raise DivergenceError(f"{failed.read_text()} (recorded by an earlier attempt)")

    reported = []

    def report(epoch: int, record: dict, model) -> None:
        reported.append(epoch)
        tune.report(dict(record))

    try:
        result = train(
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
    if not reported and result.history:
        tune.report(dict(result.history[-1]))
    if len(result.history) >= cfg.epochs:  # finished: evaluation reads the weights alone
        keep_weights_only(ckpt_file)


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
    # one Ray experiment (and MLflow tune run) per set of settings: a changed search space
    # starts afresh instead of restoring (or colliding with) the old one
    digest = settings.digest()
    state_dir = storage_dir / f"trials-{digest}"  # each trial's own checkpoint
    data_path = str(Path(data_path).resolve())
    tags = tracking.provenance_tags(project_root)
    meta = load_prepared(data_path).meta
    with tracking.run(
        tracking_uri,
        experiment,
        key={"sanode.study": settings.name, "sanode.digest": digest, "sanode.kind": "tune"},
        stale={"sanode.study": settings.name},
        name=f"tune-{settings.name}",
        tags={**tags, "sanode.rule": "tune"},
    ) as tune_run:
        tune_run.log_params(
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
        tune_run.set_tags(
            {
                "sanode.data_sha256": meta.get("cache_sha256", ""),
                **{f"sanode.data_md5.{k}": v for k, v in meta.get("raw_md5", {}).items()},
            }
        )
        eps = float(settings.base.get("eps_train", 0.0))
        val = eps if settings.val_eps is None else settings.val_eps
        tune_run.log_datasets(meta, data_path, {"train": eps, "val": val})
        return _run_tuner(
            settings,
            tune_run=tune_run,
            tags={**tags, "sanode.digest": digest},
            experiment_path=layout.tune_experiment(storage_dir, digest),
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
    tune_run: tracking.Run,
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
    client, exp_id = tune_run.client, tune_run.experiment_id
    callback = MlflowTrialCallback(
        tracking_uri,
        exp_id,
        tune_run.run_id,
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
        # building tables from a partial study (tracking.run marks the tune run KILLED)
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
    _write_outputs(table, settings, out_dir, tune_run)
    return table
