"""The analyses of trained models (paper Figs. 4-12, and three beyond the paper).

One analysis = one file here = one :class:`~sanode.pipeline.analyses.base.Analysis`
subclass: its typed settings (the config block ``analyses.<name>``), the inputs it reads, its
tables with their schemas, its figures with their captions, ``run`` and ``draw``.
:data:`ANALYSES` lists them; the workflow's rules, output paths, report captions and digests
are generated from it.

To add one: write ``<name>.py`` with an ``Analysis`` subclass, add it to :data:`ANALYSES`,
add its block to ``workflow/schemas/config.schema.yaml`` (a test checks the schema against
the settings) and a caption under ``workflow/report/``.

Importing this package loads no torch, pandas or plotting library (the Snakefile reads it).
The numerical routines the analyses call live in :mod:`sanode.probes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import ConfigError
from .. import layout
from ..study import eps_train_grid
from .base import Analysis, Context, Figure, Result, Table
from .baselines import Baselines
from .cases import Cases
from .census import Census
from .inversion import Inversion
from .mse_time import MseTime
from .perturbation import Perturbation
from .sensitivity import Sensitivity
from .timestep import Timestep

__all__ = ["ANALYSES", "Analysis", "Context", "Figure", "Result", "Table", "get", "outputs"]

ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in (
        MseTime(),
        Perturbation(),
        Cases(),
        Timestep(),
        Inversion(),
        Baselines(),
        Census(),
        Sensitivity(),
    )
}


def get(name: str) -> Analysis:
    try:
        return ANALYSES[name]
    except KeyError:
        raise ConfigError(f"analyses.{name}: unknown analysis; allowed: {list(ANALYSES)}") from None


def configured(config: Mapping[str, Any]) -> list[str]:
    """The names of the analyses the config asks for, in the config's order."""
    return list(config.get("analyses") or {})


def problems(config: Mapping[str, Any]) -> list[str]:
    """Every problem of the config's ``analyses`` block, one line each."""
    lines = []
    for name in configured(config):
        try:
            analysis = get(name)
            settings = analysis.settings(config)
        except ConfigError as err:
            lines.append(str(err))
            continue
        lines += analysis.check(settings, config)
        lines += _label_problems(name, settings, config)
    return lines


def _label_problems(name: str, settings: Any, config: Mapping[str, Any]) -> list[str]:
    """A test image's class (``label``) that the study's data set does not have: the analysis
    cannot apply to it, said by the config check instead of a crash in its job."""
    from ...config import dataset_classes

    if hasattr(settings, "chosen"):
        targets = settings.chosen()
    elif hasattr(settings, "probed"):
        targets = settings.probed()
    else:
        targets = list(getattr(settings, "targets", ()))
    lines = []
    studies_ = config.get("studies") or {}
    for t in targets:
        label, study = getattr(t, "label", None), getattr(t, "study", None)
        if label is None or study not in studies_:
            continue
        k = dataset_classes(str(studies_[study].get("train", {}).get("dataset", "")))
        if k is not None and not 0 <= label < k:
            lines.append(
                f"analyses.{name}: label {label} is not a class of study {study!r} (its data "
                f"set has K = {k} classes); choose a label in 0..{k - 1}"
            )
    return lines


def studies(config: Mapping[str, Any], name: str) -> list[str]:
    """The studies whose models, data or trials analysis ``name`` reads."""
    analysis = get(name)
    return analysis.studies(analysis.settings(config), config)


def outputs(config: Mapping[str, Any], name: str) -> dict[str, dict[str, str]]:
    """``{"tables": {key: path}, "figures": {key: path}, "captions": {key: caption}}`` of
    analysis ``name`` under this config."""
    analysis = get(name)
    settings = analysis.settings(config)
    figures = analysis.figures(settings, config)
    return {
        "tables": {key: layout.table(t.name) for key, t in analysis.tables.items()},
        "figures": {key: layout.figure(f.stem) for key, f in figures.items()},
        "captions": {key: f.caption for key, f in figures.items()},
    }


def inputs(config: Mapping[str, Any], name: str) -> dict[str, list[str] | str]:
    """The files analysis ``name`` reads (named inputs of its rule)."""

    analysis = get(name)
    settings = analysis.settings(config)
    names = analysis.studies(settings, config)
    data_root = (config.get("project") or {}).get("data_root", "data")
    out: dict[str, list[str] | str] = {}
    if analysis.uses_models:
        out["models"] = [layout.models_dir(s) for s in names]
        out["data"] = [layout.prepared(data_root, s) for s in names]
    if analysis.uses_trials:
        out["trials"] = [layout.trials_table(s) for s in names]
    if analysis.uses_states:
        (study,) = names
        out["states"] = layout.evaluation(
            study, eps_train_grid(dict(config), study)[0], "states.pt"
        )
    return out
