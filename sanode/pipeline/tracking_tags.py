"""What an MLflow run records besides its metrics: the data it read as dataset inputs (one
per split, with its files' digests), the provenance tags (git revision, versions), flattened
params, and the tags of a run's precision. (Runs and the store: :mod:`sanode.pipeline.tracking`.)"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_PARAM_LENGTH = 6000  # MLflow's limit of a param value
_CONTEXTS = {"train": "training", "val": "validation", "test": "evaluation"}


def log_datasets(
    mlflow_client,
    run_id: str,
    meta: Mapping[str, Any],
    source: str,
    splits: Mapping[str, Any],
) -> None:
    """Log the prepared data a run used as MLflow dataset inputs (the runs table's Dataset
    column): one per split, named ``<data set>-<split>``, with a digest of the raw files' MD5
    checksums (of the prepared file for the generated letters), the split's size, the
    per-class subset and the noise level (``splits``: split -> eps) in its profile."""
    import hashlib
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    from ..config import dataset_kind

    settings = meta.get("settings", {})
    checksums = meta.get("raw_md5") or {"prepared": meta.get("cache_sha256", "")}
    name = str(meta.get("dataset", "data"))
    if dataset_kind(name) in ("npz", "folder"):  # a user's own: its file or folder is the source
        source, name = name, Path(name).stem
    inputs = []
    for split, eps in splits.items():
        key = json.dumps([checksums, meta.get("cache_sha256"), split], sort_keys=True)
        profile = {
            "split": split,
            "size": meta.get("sizes", {}).get(split),
            "per_class": settings.get("per_class"),
            "noise_eps": eps,
            "raw_md5": checksums,
            "prepared_sha256": meta.get("cache_sha256"),
        }
        dataset = Dataset(
            name=f"{name}-{split}",
            digest=hashlib.md5(key.encode()).hexdigest()[:12],
            source_type="local",
            source=json.dumps({"uri": str(source)}),
            profile=json.dumps(profile),
        )
        context = _CONTEXTS.get(split, split)
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    for attempt in range(_LOG_INPUTS_TRIES):
        try:
            mlflow_client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            # two jobs logging the same new dataset at once (e.g. two evaluations of one test
            # set): the later insert hits the key the earlier one just wrote and is rolled
            # back; MLflow looks datasets up before inserting, so a retry links the stored one
            if "UNIQUE constraint failed: datasets" not in str(err) or (
                attempt == _LOG_INPUTS_TRIES - 1
            ):
                raise


_LOG_INPUTS_TRIES = 3


def git_revision(cwd: str | os.PathLike | None = None) -> str:
    """``<sha>`` of HEAD, with ``-dirty`` if tracked files changed; ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def provenance_tags(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """Git revision and versions of the packages that determine a result."""
    import mlflow
    import torch

    from .. import __version__

    tags = {
        "sanode.git_revision": git_revision(cwd),
        "sanode.version": __version__,
        "sanode.torch_version": torch.__version__,
        "sanode.mlflow_version": mlflow.__version__,
        "sanode.python": platform.python_version(),
        "sanode.host": platform.node(),
    }
    try:
        import ray

        tags["sanode.ray_version"] = ray.__version__
    except ImportError:  # ray is a dependency, but tracking works without it
        pass
    return tags


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``, values as strings cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:MAX_PARAM_LENGTH]
    return out


def precision_tags(precision: Any) -> dict[str, str]:
    """MLflow tags of a run's :class:`~sanode.core.precision.Precision` or of its record (a
    checkpoint's ``precision``; None: no tags): the
    products and their routes, the LAPACK of A's solves (each rounds differently), where the
    choice came from and the times measured for it."""
    if precision is None:
        return {}
    record = dict(precision) if isinstance(precision, Mapping) else precision.record()
    times = record.pop("times_ms")
    tags = {f"sanode.{key}": str(value) for key, value in record.items()}
    tags["sanode.calibration_times_ms"] = json.dumps(times, sort_keys=True)
    return tags
