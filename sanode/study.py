"""Study settings and pipeline-config checks, importable without torch, Ray or pandas.

The Snakefile validates its config with these before any job runs, also in a Snakemake
process that has nothing but Snakemake installed (``--use-conda``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import EXECUTION_KEYS, ConfigError, TrainConfig, settings_digest

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


@dataclass(frozen=True)
class StudySettings:
    """What one study searches and how (validated by the workflow schema and here)."""

    name: str
    base: dict[str, Any]  # TrainConfig settings shared by every trial
    search_space: dict[str, Any]  # key -> list (grid) or {"loguniform"|"uniform"|"choice": ...}
    num_samples: int = 1
    metric: str = "val_accuracy"
    mode: str = "max"
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "fifo"})
    val_eps: float | None = 0.0  # validation noise; None: each trial's own eps_train
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0

    def __post_init__(self) -> None:
        TrainConfig.from_dict(self.base)  # unknown keys / bad values fail here
        problems = search_space_problems(self.base, self.search_space)
        if problems:
            raise ConfigError("; ".join(problems))
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    def digest(self) -> str:
        """Digest of everything that determines the study's results (not where or how it
        runs): a change starts a new Ray experiment and a new MLflow study run, and makes
        Snakemake rerun the tune rule."""
        return settings_digest(
            {
                "base": {k: v for k, v in self.base.items() if k not in EXECUTION_KEYS},
                "search_space": self.search_space,
                "num_samples": self.num_samples,
                "metric": self.metric,
                "mode": self.mode,
                "scheduler": self.scheduler,
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


class PipelineConfigError(ValueError):
    """The pipeline config is inconsistent; the message names the key and what is allowed."""


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
    return settings_digest(
        {
            "train": {k: base.get(k) for k in keys},
            "prepare": config["studies"][study].get("prepare", {}),
        }
    )


def study_digest(config: dict, study: str) -> str:
    """Digest of what determines a study's trained models (its data and its search)."""
    return settings_digest([data_digest(config, study), study_settings(config, study).digest()])


def evaluation_digest(config: dict, study: str) -> str:
    """Digest of what determines a study's evaluation tables (its models and evaluate block)."""
    spec = config["studies"][study].get("evaluate", {})
    return settings_digest([study_digest(config, study), spec])


def analysis_digest(config: dict, name: str) -> str:
    """Digest of what determines an analysis' tables (its block and the models it reads)."""
    spec = (config.get("analyses") or {}).get(name, {})
    studies = analysis_studies(config, name)
    return settings_digest([spec, [evaluation_digest(config, s) for s in studies]])


def study_settings(config: dict, study: str) -> StudySettings:
    spec = config["studies"][study]
    resources = spec.get("resources", {})
    return StudySettings(
        name=study,
        base=train_settings(config, study),
        search_space=spec.get("search_space", {}),
        num_samples=spec.get("num_samples", 1),
        metric=spec.get("metric", "val_accuracy"),
        mode=spec.get("mode", "max"),
        scheduler=spec.get("scheduler", {"name": "fifo"}),
        val_eps=spec.get("val_eps", 0.0),
        cpus_per_trial=resources.get("cpus_per_trial", 1),
        gpus_per_trial=resources.get("gpus_per_trial", 0),
    )


def validate_config(
    config: dict, *, schema: str | Path | None = None, source: str | None = None
) -> None:
    """One validation pass over a pipeline config, before any job runs: the JSON schema (when
    given), then the checks the schema cannot express (types and relations of every training
    setting, search-space values and bounds, analyses). Raises :class:`PipelineConfigError`
    with one line per problem: ``<source>: <key path>: <what is wrong and how to fix it>``."""
    problems = config_problems(config, schema=schema)
    if problems:
        where = f"{source}: " if source else ""
        raise PipelineConfigError("\n".join(where + p for p in problems))


def config_problems(config: dict, *, schema: str | Path | None = None) -> list[str]:
    """Every problem of ``config`` as one line each (empty: the config is valid)."""
    if schema is not None:
        problems = schema_problems(config, schema)
        if problems:
            return problems  # the package checks below assume the schema's shape
    else:
        problems = []
    studies = config.get("studies") or {}
    if not studies:
        return ["studies: the config has no studies; add at least one under 'studies'"]
    mirror = (config.get("project") or {}).get("mirror")
    if mirror and not Path(mirror).expanduser().is_dir():
        problems.append(
            f"project.mirror: folder {mirror} does not exist; point it at a folder holding "
            "MNIST/raw and FashionMNIST/raw, or set it to null to download"
        )
    allowed = sorted(TrainConfig().to_dict())
    for name, spec in studies.items():
        unknown = sorted(set(spec.get("train", {})) - set(allowed))
        if unknown:
            problems.append(
                f"studies.{name}.train: unknown key(s) {unknown}; allowed keys: {allowed}"
            )
            continue
        try:
            base = train_settings(config, name)
            TrainConfig.from_dict(base)
        except ConfigError as err:
            problems.append(f"studies.{name}.train: {err}")
            continue
        space = spec.get("search_space", {})
        problems += [f"studies.{name}.{p}" for p in search_space_problems(base, space)]
        if not problems:
            try:
                study_settings(config, name)
            except ValueError as err:
                problems.append(f"studies.{name}: {err}")
    if not problems:
        try:
            _validate_analyses(config)
        except PipelineConfigError as err:
            problems.append(str(err))
    return problems


def schema_problems(config: dict, schema: str | Path) -> list[str]:
    """The JSON-schema violations of ``config``, one short line each (key path, problem, and
    for an unknown key the allowed ones), never the schema itself."""
    import jsonschema
    import yaml

    spec = yaml.safe_load(Path(schema).read_text())
    validator = jsonschema.Draft202012Validator(spec)
    lines = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties") or {})
            extra = (
                sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
            )
            lines.append(f"{path}: unknown key(s) {extra}; allowed keys: {allowed}")
        elif err.validator == "type":
            lines.append(f"{path}: {err.instance!r} is not of type {err.validator_value}")
        elif err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            lines.append(f"{path}: {err.instance!r} violates {err.validator} {err.validator_value}")
        elif err.validator == "enum":
            lines.append(f"{path}: {err.instance!r} is not one of {err.validator_value}")
        else:
            message = err.message if len(err.message) < 200 else err.message[:200] + "..."
            lines.append(f"{path}: {message}")
    return lines


ANALYSES = ("mse_time", "perturbation", "cases", "timestep", "inversion", "baselines", "census")


def analysis_studies(config: dict, name: str) -> list[str]:
    """The studies whose models analysis ``name`` reads (all studies for baselines/census)."""
    spec = (config.get("analyses") or {}).get(name)
    if spec is None:
        return []
    if name == "inversion":
        return list(dict.fromkeys(t["study"] for t in spec["targets"]))
    if name in ("baselines", "census"):
        return list(config["studies"])
    return [spec["study"]]


def analysis_files(config: dict) -> dict[str, dict[str, dict[str, str]]]:
    """Tables and figures of every configured analysis: ``{name: {"tables": {key: path},
    "figures": {key: path}, "captions": {key: caption file}}}``. Figure names carry the
    paper's figure number."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    analyses = config.get("analyses") or {}
    t, f = "results/tables", "results/figures"

    def add(name, tables, figures):
        out[name] = {
            "tables": {k: f"{t}/{v}.parquet" for k, v in tables.items()},
            "figures": {k: f"{f}/{v[0]}.png" for k, v in figures.items()},
            "captions": {k: v[1] for k, v in figures.items()},
        }

    if "mse_time" in analyses:
        add(
            "mse_time",
            {"curves": "fig4_mse_time", "finals": "fig4_final_mse"},
            {"fig4": ("fig4_mse_time_one_class", "fig4_one_class")},
        )
    if "perturbation" in analyses:
        add(
            "perturbation",
            {"single": "fig5_single_perturbation", "collective": "fig6_collective_perturbation"},
            {
                "fig5": ("fig5_single_perturbation", "fig5"),
                "fig6": ("fig6_collective_perturbation", "fig6"),
            },
        )
    if "cases" in analyses:
        add("cases", {"cases": "fig7_cases"}, {"fig7": ("fig7_three_cases", "fig7")})
    if "timestep" in analyses:
        add(
            "timestep",
            {"timestep": "fig8_timestep"},
            {"fig8": ("fig8_timestep_convergence", "fig8")},
        )
    if "inversion" in analyses:
        figures = {}
        for study in analysis_studies(config, "inversion"):
            figures[f"trajectories_{study}"] = (f"fig9_11_trajectories_{study}", "fig9_11")
            figures[f"inversion_{study}"] = (f"fig10_12_inversion_{study}", "fig10_12")
        add(
            "inversion",
            {
                "trajectories": "fig9_trajectories",
                "errors": "fig10_inversion",
                "images": "fig10_inversion_images",
            },
            figures,
        )
    if "baselines" in analyses:
        add(
            "baselines",
            {"baselines": "baselines"},
            {f"baselines_{s}": (f"baselines_{s}", "baselines") for s in config["studies"]},
        )
    if "census" in analyses:
        add(
            "census",
            {"stability": "stability", "census": "census"},
            {"census": ("census_stability", "census")},
        )
    return out


def nearest_eps(config: dict, study: str, eps: float) -> float:
    """The level of the study's eps_train grid closest to ``eps`` (its trained model)."""
    return min(eps_train_grid(config, study), key=lambda e: (abs(e - eps), e))


def _validate_analyses(config: dict) -> None:
    analyses = config.get("analyses") or {}
    studies = config["studies"]
    for name in analyses:
        if name not in ANALYSES:
            raise PipelineConfigError(
                f"analyses.{name}: unknown analysis; allowed: {list(ANALYSES)}"
            )
        for study in analysis_studies(config, name):
            if study not in studies:
                raise PipelineConfigError(
                    f"analyses.{name}: study {study!r} is not defined under 'studies' "
                    f"(defined: {sorted(studies)})"
                )
        spec = analyses[name]
        if name == "timestep":
            t = float(spec.get("t", 10.0))
            for dt in [*spec.get("dts", []), spec.get("reference_dt", 0.001)]:
                if abs(t / dt - round(t / dt)) > 1e-9:
                    raise PipelineConfigError(
                        f"analyses.timestep: dt = {dt} does not divide t = {t}; pick time steps "
                        "with an integer number of steps to t"
                    )
        if name == "cases" and not (
            studies[spec["study"]].get("evaluate", {}).get("eps_test", [0.0])[0] == 0.0
        ):
            raise PipelineConfigError(
                "analyses.cases: the study's evaluate.eps_test must start at 0.0 (the cases "
                "are drawn from the clean test set)"
            )


def eps_train_grid(config: dict, study: str) -> list[float]:
    return study_settings(config, study).eps_train_grid()


def eps_label(eps: float) -> str:
    """The ``eps_train`` wildcard value of a noise level (``0.3`` -> ``"0.3"``)."""
    return f"{float(eps):g}"
