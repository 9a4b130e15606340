"""What an analysis is: typed settings, the inputs it reads, its tables and figures, run, draw.

An analysis is one subclass of :class:`Analysis` in one file of this package, listed in
:data:`sanode.pipeline.analyses.ANALYSES`. From it the workflow builds its two rules (tables, then
figures), their inputs, output paths, report captions and digests; the pipeline stages
(:func:`sanode.pipeline.analysis_stage`, :func:`sanode.pipeline.analysis_figures_stage`)
run it inside one MLflow run and check its tables against the schemas it declares.

This module and the analysis modules import no torch, pandas or plotting library at import
time (the Snakefile reads them in Snakemake's own process); ``run`` and ``draw`` import what
they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import ConfigError
from ..settings import Settings as BaseSettings
from ..study import eps_train_grid, train_settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from ...config import TrainConfig
    from ...core.model import SANode
    from ...data.prepare import PreparedData


@dataclass(frozen=True)
class Table:
    """One output table: ``results/tables/<name>.parquet``, columns -> dtype kind (f float,
    i integer, b bool, O string); ``mlflow_run_id`` is added by the stage."""

    name: str
    schema: Mapping[str, str]


@dataclass(frozen=True)
class Figure:
    """One output figure: ``results/figures/<stem>.png`` with the report caption
    ``workflow/report/<caption>.rst``."""

    stem: str
    caption: str


@dataclass(frozen=True)
class Result:
    """What ``run`` returns: one frame per table key, and summary metrics for MLflow."""

    tables: dict[str, pd.DataFrame]
    metrics: dict[str, float] = field(default_factory=dict)


class Analysis:
    """Base class of the analyses. Subclasses set the class attributes and implement ``run``
    and ``draw``; ``studies``, ``figures`` and ``check`` have defaults for an analysis of
    one study's models named by the ``study`` setting."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line: what it shows (schema, README, report)
    Settings: ClassVar[type[BaseSettings]]
    tables: ClassVar[dict[str, Table]]
    category: ClassVar[str] = "Paper analyses"  # the report's category of its figures
    uses_models: ClassVar[bool] = True  # the selected models and prepared data of its studies
    uses_states: ClassVar[bool] = False  # the evaluation states of its study's first eps_train
    uses_trials: ClassVar[bool] = False  # the trials tables of its studies
    uses_accuracy: ClassVar[bool] = False  # its figures read the aggregated accuracy table

    def settings(self, config: Mapping[str, Any]) -> BaseSettings:
        """The analysis' block of ``config`` as typed settings (defaults filled in)."""
        block = (config.get("analyses") or {}).get(self.name)
        return self.Settings.from_mapping(block or {}, where=f"analyses.{self.name}")

    def studies(self, settings: Any, config: Mapping[str, Any]) -> list[str]:
        """The studies whose models (or trials) the analysis reads."""
        return [settings.study]

    def figures(self, settings: Any, config: Mapping[str, Any]) -> dict[str, Figure]:
        raise NotImplementedError

    def check(self, settings: Any, config: Mapping[str, Any]) -> list[str]:
        """Problems of the settings in the context of the whole config (one line each)."""
        return []

    def run(self, settings: Any, ctx: Context) -> Result:
        raise NotImplementedError

    def draw(
        self,
        settings: Any,
        tables: dict[str, pd.DataFrame],
        figures: dict[str, str],
        accuracy: pd.DataFrame | None = None,
    ) -> None:
        raise NotImplementedError


@dataclass
class Context:
    """The inputs of one analysis run: the config, and per study the selected models' folder,
    the prepared data, the trials table; the evaluation states file when it uses them."""

    config: Mapping[str, Any]
    models: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    trials: dict[str, str] = field(default_factory=dict)
    states: str | None = None
    _prepared: dict[str, PreparedData] = field(default_factory=dict, repr=False)

    def train_config(self, study: str) -> TrainConfig:
        from ...config import TrainConfig

        return TrainConfig.from_dict(train_settings(dict(self.config), study))

    def eps_grid(self, study: str) -> list[float]:

        return eps_train_grid(dict(self.config), study)

    def nearest_eps(self, study: str, eps: float) -> float:
        """The level of the study's eps_train grid closest to ``eps`` (its trained model)."""
        return min(self.eps_grid(study), key=lambda e: (abs(e - eps), e))

    def model(self, study: str, eps: float) -> SANode:
        """The model the tune stage selected for ``eps`` (in eval mode)."""
        from ...training.checkpoint import load_model
        from .. import layout

        model, _, _ = load_model(layout.model_path(self.models[study], eps))
        return model.eval()

    def prepared(self, study: str) -> PreparedData:
        from ...data.prepare import load_prepared

        if study not in self._prepared:
            self._prepared[study] = load_prepared(self.data[study])
        return self._prepared[study]

    def test_image(self, study: str, label: int) -> torch.Tensor:
        """The first test image of class ``label`` (for letters: the clean letter)."""
        x, y = self.prepared(study).split("test")
        hits = (y == label).nonzero()
        if len(hits) == 0:
            raise ConfigError(
                f"the test split of {self.data[study]} has no image of class {label}; "
                "choose a label of the data set"
            )
        return x[int(hits[0])]


def study_defined(name: str, studies: list[str], config: Mapping[str, Any]) -> list[str]:
    """A problem line per study the analysis names that the config does not define."""
    defined = sorted(config.get("studies") or {})
    return [
        f"analyses.{name}: study {s!r} is not defined under 'studies' (defined: {defined})"
        for s in studies
        if s not in defined
    ]
