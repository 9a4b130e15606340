"""Pipeline-config validation and the analyses' digests: the layer above the study settings
and the analyses (it imports both; neither imports it), importable without torch, Ray or
pandas, so the Snakefile validates its config before any job runs.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, TrainConfig, settings_digest
from . import analyses
from .study import (
    PipelineConfigError,
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
    for name, spec in studies.items():
        try:
            base = train_settings(config, name)
            TrainConfig.from_dict(base)
        except ConfigError as err:
            problems.append(f"studies.{name}.train: {err}")
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
                evaluate_settings(config, name)
            except ConfigError as err:
                problems.append(str(err))
    if not problems:
        problems += winner_problems(config)
    if not problems:
        problems += analyses.problems(config)
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
