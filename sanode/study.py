"""Study settings and pipeline-config checks, importable without torch, Ray or pandas.

The Snakefile validates its config with these before any job runs, also in a Snakemake
process that has nothing but Snakemake installed (``--use-conda``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig


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
        allowed = set(TrainConfig().to_dict())
        unknown = sorted(set(self.search_space) - allowed)
        if unknown:
            raise ValueError(
                f"search_space has unknown key(s) {unknown}; allowed: {sorted(allowed)}"
            )
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

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


def validate_config(config: dict) -> None:
    """Checks the JSON schema cannot express; raises :class:`PipelineConfigError`."""
    studies = config.get("studies") or {}
    if not studies:
        raise PipelineConfigError("config has no studies; add at least one under 'studies'")
    mirror = config.get("project", {}).get("mirror")
    if mirror and not Path(mirror).expanduser().is_dir():
        raise PipelineConfigError(
            f"project.mirror: folder {mirror} does not exist; point it at a folder holding "
            "MNIST/raw and FashionMNIST/raw, or set it to null to download"
        )
    allowed = sorted(TrainConfig().to_dict())
    for name, spec in studies.items():
        unknown = sorted(set(spec.get("train", {})) - set(allowed))
        unknown_space = sorted(set(spec.get("search_space", {})) - set(allowed))
        for where, keys in (("train", unknown), ("search_space", unknown_space)):
            if keys:
                raise PipelineConfigError(
                    f"studies.{name}.{where}: unknown key(s) {keys}; allowed keys: {allowed}"
                )
        try:
            study_settings(config, name)
        except ValueError as err:
            raise PipelineConfigError(f"studies.{name}: {err}") from None
    _validate_analyses(config)


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
