"""Driver-side MLflow logging of a Ray Tune study: one child run per trial under the study's
run, per-epoch metrics, the final status, the trial's checkpoint and its precision tags; and
where a trial keeps its checkpoint. (Ray wiring: :mod:`sanode.pipeline.tune`.)"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ray import tune

from .. import files
from ..config import TrainConfig, settings_digest
from . import tracking
from .study import StudySettings

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"
FAILED_FILE = "diverged.txt"  # beside a trial's checkpoint: why it diverged


def trial_checkpoint(state_dir: str | os.PathLike, trial_id: str, params: dict) -> Path:
    """Where trial ``trial_id`` with sampled settings ``params`` keeps its checkpoint:
    ``<state_dir>/<number>-<digest of params>/model.pt``.

    The name holds the trial's number in the search (``00003`` of Ray's trial id
    ``6bf0a_00003``) and its settings, not Ray's experiment, so a study whose Ray experiment
    folder is gone (a new machine given only ``trials-<digest>``, a deleted ``tune-<digest>``)
    starts a new experiment whose trials continue from these files: a finished trial is not
    trained again, an unfinished one goes on from its last epoch. A trial that the new search
    gives other settings (a searcher that suggests by the order trials finished) starts afresh.
    A folder named by the trial id alone (written by an earlier release) is used where it holds
    a checkpoint."""
    state_dir = Path(state_dir)
    former = state_dir / trial_id / CHECKPOINT_FILE
    if former.is_file():
        return former
    number = trial_id.rsplit("_", 1)[-1]
    return state_dir / f"{number}-{settings_digest(params)}" / CHECKPOINT_FILE


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
        ckpt = trial_checkpoint(self.state_dir, trial_id, config)
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
