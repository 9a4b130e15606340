"""Study settings and pipeline-config checks, importable without torch, Ray or pandas.

The Snakefile validates its config with these before any job runs, also in a Snakemake
process that has nothing but Snakemake installed (``--use-conda``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import EXECUTION_KEYS, RENAMED, ConfigError, TrainConfig, settings_digest
from .layout import eps_label
from .settings import EvaluateSettings, Settings

__all__ = [
    "EvaluateSettings",
    "PipelineConfigError",
    "PrepareSettings",
    "StudySettings",
    "data_digest",
    "eps_label",
    "eps_train_grid",
    "evaluate_settings",
    "evaluation_digest",
    "prepare_settings",
    "study_digest",
    "study_settings",
    "train_settings",
    "winner_of",
    "winner_settings",
]

SAMPLERS = ("loguniform", "uniform", "randint", "choice")


def search_space_problems(base: dict[str, Any], space: dict[str, Any]) -> list[str]:
    """Every search-space value, and both ends of every distribution, checked by the same rules
    as :class:`TrainConfig`, before any trial runs. Returns one line per problem."""
    allowed = set(TrainConfig().to_dict())
    problems = []

    def check(key: str, value: Any, what: str) -> None:
        try:
            TrainConfig.from_dict({**base, key: value})
        except ConfigError as err:
            problems.append(f"search_space.{key}: {what} {value!r} is not a valid setting: {err}")

    for key, spec in space.items():
        if key not in allowed:
            problems.append(
                f"search_space.{key}: unknown setting; use one of the TrainConfig keys "
                f"{sorted(allowed)}"
            )
            continue
        if isinstance(spec, list):
            if not spec:
                problems.append(f"search_space.{key}: empty grid; list at least one value")
            for value in spec:
                check(key, value, "grid value")
        elif isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
                problems.append(
                    f"search_space.{key}: {spec!r} is not a distribution; write one of "
                    + ", ".join(f"{{{s}: ...}}" for s in SAMPLERS)
                    + " or a list (a grid)"
                )
                continue
            ((kind, args),) = spec.items()
            if kind == "choice":
                if not isinstance(args, list) or not args:
                    problems.append(f"search_space.{key}: choice needs a non-empty list")
                    continue
                for value in args:
                    check(key, value, "choice")
                continue
            if not (
                isinstance(args, list)
                and len(args) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)
            ):
                problems.append(f"search_space.{key}: {kind} needs [low, high], got {args!r}")
                continue
            low, high = args
            if not low < high:
                problems.append(
                    f"search_space.{key}: {kind} bounds [{low}, {high}] are reversed or empty; "
                    "write [low, high] with low < high"
                )
            if kind == "loguniform" and low <= 0:
                problems.append(f"search_space.{key}: loguniform needs low > 0, got {low}")
                continue
            if kind == "randint" and not all(isinstance(v, int) for v in args):
                problems.append(f"search_space.{key}: randint needs integer bounds, got {args}")
                continue
            check(key, low, "lower bound")
            # randint's upper bound is exclusive
            check(key, high - 1 if kind == "randint" else high, "upper bound")
        else:
            check(key, spec, "constant")
    return problems


def searcher_problems(searcher: dict[str, Any], space: dict[str, Any]) -> list[str]:
    """A model-based searcher (optuna) suggests from distributions: a grid (a list) cannot be
    searched by it, nor eps_train, the grid axis of the noise studies. One line per problem."""
    name = searcher.get("name", "basic")
    if name == "basic":
        return []
    if name != "optuna":
        return [f"searcher.name: {name!r} is not one of ['basic', 'optuna']"]
    problems = []
    if "eps_train" in space:
        problems.append(
            "search_space.eps_train: the optuna searcher cannot search the noise grid; keep "
            "eps_train a grid with searcher basic, or one level (train.eps_train) per study"
        )
    for key, spec in space.items():
        if isinstance(spec, list) and key != "eps_train":
            problems.append(
                f"search_space.{key}: the optuna searcher takes distributions, not grids; write "
                f"{{choice: {spec}}} or use searcher basic"
            )
    return problems


@dataclass(frozen=True)
class StudySettings(Settings):
    """What one study searches and how (validated by the workflow schema and here): a
    :class:`~sanode.typecheck.Settings` block like every other, its types checked."""

    where: ClassVar[str] = "studies"

    name: str
    base: dict[str, Any]  # TrainConfig settings shared by every trial
    search_space: dict[str, Any]  # key -> list (grid) or {"loguniform"|"uniform"|"choice": ...}
    num_samples: int = 1
    metric: str = "val_accuracy"
    mode: str = "max"
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "fifo"})
    searcher: dict[str, Any] = field(default_factory=lambda: {"name": "basic"})
    val_eps: float | None = 0.0  # validation noise; None: each trial's own eps_train
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_failures: int = 2  # restarts of a trial whose worker or node was lost

    def __post_init__(self) -> None:
        self.check_types(f"studies.{self.name}")
        TrainConfig.from_dict(self.base)  # unknown keys / bad values fail here
        problems = search_space_problems(self.base, self.search_space)
        problems += searcher_problems(self.searcher, self.search_space)
        if problems:
            raise ConfigError("; ".join(problems))
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    @property
    def trial_threads(self) -> int:
        """The torch threads of one trial (and of one evaluate job): its CPUs, at least one."""
        return max(1, int(self.cpus_per_trial))

    def digest(self) -> str:
        """Digest of everything that determines the study's results (not where or how it
        runs): a change starts a new Ray experiment and a new MLflow tune run, and makes
        Snakemake rerun the tune rule."""
        # a renamed setting is the same setting: it enters under its old name, so the digests
        # (Ray experiments, MLflow runs, reruns) survive the rename
        base = {_OLD_NAMES.get(k, k): v for k, v in self.base.items() if k not in EXECUTION_KEYS}
        return settings_digest(
            {
                "base": base,
                "search_space": self.search_space,
                "num_samples": self.num_samples,
                "metric": self.metric,
                "mode": self.mode,
                "scheduler": self.scheduler,
                # the default searcher leaves the digest (and the experiments) as they were
                **({"searcher": self.searcher} if self.searcher.get("name") != "basic" else {}),
                "val_eps": self.val_eps,
            }
        )

    def eps_train_grid(self) -> list[float]:
        grid = self.search_space.get("eps_train")
        if grid is None:
            return [float(self.base.get("eps_train", 0.0))]
        if not isinstance(grid, list):
            raise ValueError("eps_train in search_space must be a list (a grid) of noise levels")
        return [float(e) for e in grid]


_OLD_NAMES = {new: old for old, new in RENAMED.items()}


# one error type for every config problem; the old name still imports
PipelineConfigError = ConfigError


def train_settings(config: dict, study: str) -> dict[str, Any]:
    """The study's TrainConfig settings, with the project's data settings filled in."""
    project = config.get("project", {})
    base = dict(config["studies"][study]["train"])
    base.setdefault("data_root", str(Path(project.get("data_root", "data")).resolve()))
    base.setdefault("mirror", project.get("mirror"))
    base.setdefault("verify_checksums", project.get("verify_checksums", True))
    return base


def data_digest(config: dict, study: str) -> str:
    """Digest of what determines a study's prepared data (data set, subset, seed, splits)."""
    base = train_settings(config, study)
    keys = ("dataset", "per_class", "letters_copies", "seed", "a")
    extra = {}
    if base.get("image_size") is not None:
        extra["image_size"] = base["image_size"]
    source = files_stamp(base.get("dataset", ""))
    if source is not None:  # an .npz or image folder: its files' sizes and times too
        extra["source"] = source
    return settings_digest(
        {
            "train": {**{k: base.get(k) for k in keys}, **extra},
            "prepare": prepare_settings(config, study).to_dict(),
        }
    )


def files_stamp(dataset: str) -> str | None:
    """For a data set given as a path (an .npz, an image folder): a digest of its files'
    names, sizes and modification times, so that changed files prepare the data again (None
    for a named data set)."""
    from ..config import dataset_kind

    if dataset_kind(dataset) not in ("npz", "folder"):
        return None
    root = Path(dataset).expanduser()
    if root.is_file():
        stat = root.stat()
        return settings_digest([root.name, stat.st_size, stat.st_mtime_ns])
    if not root.is_dir():
        return None  # the prepare stage says what is missing
    entries = [
        [str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return settings_digest(entries)


def study_digest(config: dict, study: str) -> str:
    """Digest of what determines a study's trained models (its data and its search, and for
    a retrain of another study's winner, that study's)."""
    parts = [data_digest(config, study), study_settings(config, study).digest()]
    source = winner_of(config, study)
    if source is not None:
        parts.append(study_digest(config, source))
    return settings_digest(parts)


# searched settings a retrain does not take from the winner: its own noise grid and seeds
NOT_INHERITED = frozenset({"eps_train", "seed"})


def winner_of(config: dict, study: str) -> str | None:
    """The study whose best trial ``study`` retrains (its ``winner_of`` key), or None."""
    return config["studies"][study].get("winner_of")


def winner_settings(best: dict[str, Any]) -> dict[str, Any]:
    """The searched settings of a study's selected model (its ``best.json`` record) that a
    retrain takes over: those of the first eps_train's model, but eps_train and seed."""
    models = best.get("models") or {}
    if not models:
        raise ConfigError("the winner's best.json holds no model; rerun its tune rule")
    params = next(iter(models.values())).get("params", {})
    return {k: v for k, v in params.items() if k not in NOT_INHERITED}


def winner_problems(config: dict) -> list[str]:
    """``winner_of`` must name another study of the same data set that retrains no one."""
    studies = config.get("studies") or {}
    problems = []
    for name, spec in studies.items():
        source = spec.get("winner_of")
        if source is None:
            continue
        where = f"studies.{name}.winner_of"
        if source == name or source not in studies:
            others = sorted(set(studies) - {name})
            problems.append(f"{where}: {source!r} is not another study; one of {others}")
        elif studies[source].get("winner_of") is not None:
            problems.append(
                f"{where}: {source!r} retrains a winner itself; name the searched study "
                f"{studies[source]['winner_of']!r} instead"
            )
        elif studies[source]["train"].get("dataset") != spec["train"].get("dataset"):
            problems.append(
                f"{where}: {source!r} searched {studies[source]['train'].get('dataset')!r}, "
                f"not this study's {spec['train'].get('dataset')!r}"
            )
        elif set(spec.get("search_space") or {}) - {"seed"}:
            problems.append(
                f"{where}: a retrain searches nothing but seeds; move "
                f"{sorted(set(spec['search_space']) - {'seed'})} to {source!r}'s search_space"
            )
    return problems


def evaluation_digest(config: dict, study: str) -> str:
    """Digest of what determines a study's evaluation tables (its models and evaluate block)."""
    spec = evaluate_settings(config, study).to_dict()
    return settings_digest([study_digest(config, study), spec])


def evaluate_settings(config: Mapping[str, Any], study: str) -> EvaluateSettings:
    """The ``evaluate`` block of ``study`` as typed settings (defaults filled in)."""
    block = config["studies"][study].get("evaluate") or {}
    return EvaluateSettings.from_mapping(block, where=f"studies.{study}.evaluate")


def study_settings(config: dict, study: str) -> StudySettings:
    """The study's search settings; a key the block leaves out takes the dataclass default."""
    spec = config["studies"][study]
    keys = ("num_samples", "metric", "mode", "scheduler", "searcher", "val_eps")
    return StudySettings(
        name=study,
        base=train_settings(config, study),
        search_space=spec.get("search_space", {}),
        **{k: spec[k] for k in keys if k in spec},
        **{k: v for k, v in spec.get("resources", {}).items()},
    )


@dataclass(frozen=True)
class PrepareSettings(Settings):
    """A study's ``prepare`` block: how its prepared data are split."""

    val_fraction: float = 0.1  # of the training images, held out for validation
    test_per_class: int | None = None  # a balanced test subset; null: every test image

    def check(self, where: str) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{where}.val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.test_per_class is not None and self.test_per_class < 1:
            raise ConfigError(f"{where}.test_per_class must be >= 1, got {self.test_per_class}")


def prepare_settings(config: dict, study: str) -> PrepareSettings:
    block = config["studies"][study].get("prepare") or {}
    return PrepareSettings.from_mapping(block, where=f"studies.{study}.prepare")


def eps_train_grid(config: dict, study: str) -> list[float]:
    return study_settings(config, study).eps_train_grid()
