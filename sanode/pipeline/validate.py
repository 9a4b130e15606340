"""Pipeline-config validation and the analyses' digests: the layer above the study settings
and the analyses (it imports both; neither imports it), importable without torch, Ray or
pandas, so the Snakefile validates its config before any job runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import ConfigError, TrainConfig, dataset_kind, named_sets, settings_digest
from . import analyses
from .study import (
    evaluate_settings,
    evaluation_digest,
    prepare_settings,
    search_space_problems,
    searcher_problems,
    study_settings,
    train_settings,
    winner_problems,
)

__all__ = ["analysis_digest", "config_problems", "schema_problems", "validate_config"]


def analysis_digest(config: dict, name: str) -> str:
    """Digest of what determines an analysis' tables (its settings and the models, evaluations
    and trials it reads)."""
    analysis = analyses.get(name)
    settings = analysis.settings(config)
    studies = analysis.studies(settings, config)
    return settings_digest([settings.to_dict(), [evaluation_digest(config, s) for s in studies]])


def validate_config(
    config: dict, *, schema: str | Path | None = None, source: str | None = None
) -> None:
    """One validation pass over a pipeline config, before any job runs: the JSON schema (when
    given), then the checks the schema cannot express (types and relations of every training
    setting, search-space values and bounds, analyses). Raises :class:`ConfigError`
    with one line per problem: ``<source>: <key path>: <what is wrong and how to fix it>``."""
    problems = config_problems(config, schema=schema)
    if problems:
        where = f"{source}: " if source else ""
        raise ConfigError("\n".join(where + p for p in problems))


def default_schema() -> Path:
    """The pipeline's config schema, ``workflow/schemas/config.schema.yaml`` of the checkout
    this package runs from (whatever the current folder)."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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
    for name, spec in studies.items():
        try:
            base = train_settings(config, name)
            TrainConfig.from_dict(base)
        except ConfigError as err:
            problems.append(f"studies.{name}.train: {err}")
            continue
        dataset = str(base.get("dataset", ""))
        if dataset_kind(dataset) in ("npz", "folder") and not Path(dataset).expanduser().exists():
            problems.append(
                f"studies.{name}.train.dataset: {dataset!r} is neither a data set name "
                f"({', '.join(named_sets())}) nor an existing .npz file or image folder (a "
                "relative path is taken from the folder the pipeline runs in)"
            )
            continue
        space = spec.get("search_space", {})
        problems += [f"studies.{name}.{p}" for p in search_space_problems(base, space)]
        searcher = spec.get("searcher", {})
        problems += [f"studies.{name}.{p}" for p in searcher_problems(searcher, space)]
        if not problems:
            try:
                study_settings(config, name)
            except ValueError as err:
                problems.append(f"studies.{name}: {err}")
    if not problems:
        for name in studies:
            try:
                prepare_settings(config, name)
                ev = evaluate_settings(config, name)
            except ConfigError as err:
                problems.append(str(err))
                continue
            problems += evaluate_horizon_problems(config, name, ev)
    if not problems:
        problems += winner_problems(config)
    if not problems:
        problems += analyses.problems(config)
    return problems


def evaluate_horizon_problems(config: dict, study: str, ev: Any) -> list[str]:
    """The evaluate block's horizon against the study's time step: at least one step and a
    whole number of them (what ``sanode evaluate --t-eval`` refuses too), else the evaluate
    stage would integrate zero steps (and score every item wrong) or stop short of it."""
    if ev.t_eval is None:
        return []
    dt = TrainConfig.from_dict(train_settings(config, study)).dt
    steps = ev.t_eval / dt
    where = f"studies.{study}.evaluate.t_eval"
    if steps < 1 - 1e-9:
        return [
            f"{where}: {ev.t_eval:g} is shorter than one step of the study's dt ({dt:g}): "
            f"no step would run; set a multiple of dt, e.g. {120 * dt:g}"
        ]
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        lo, hi = math.floor(steps) * dt, math.ceil(steps) * dt
        return [
            f"{where}: {ev.t_eval:g} is not a whole number of steps of the study's dt "
            f"({dt:g}): {steps:.4g} steps; use {lo:.6g} or {hi:.6g}"
        ]
    return []


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
        elif err.instance == [] and "search_space" in err.absolute_path:
            lines.append(f"{path}: an empty grid; list at least one value (e.g. [0.01])")
        else:
            message = err.message if len(err.message) < 200 else err.message[:200] + "..."
            lines.append(f"{path}: {message}")
    return lines
