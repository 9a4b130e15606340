"""The pipeline's own settings blocks (light: no torch, pandas or Ray).

A block (the ``evaluate`` block of a study, the block of one analysis) is a frozen dataclass
deriving from :class:`~sanode.typecheck.Settings` (re-exported here), the base that
:class:`~sanode.config.TrainConfig` derives from too: one type check for every setting.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from ..typecheck import ConfigError, Settings

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = ["EvaluateSettings", "Settings"]


@dataclasses.dataclass(frozen=True)
class EvaluateSettings(Settings):
    """A study's ``evaluate`` block: how the evaluate stage (and ``sanode evaluate``) scores a
    selected model over the test-noise grid."""

    where: ClassVar[str] = "evaluate"

    eps_test: tuple[float, ...] = (0.0,)  # test-noise levels; the first gives Fig. 7's cases
    t_eval: float | None = None  # evaluation horizon; null: the model's own t_eval
    batch_size: int | None = None  # null: the model's eval_batch_size
    mse_items: int = 200  # items of the MSE(t) curve per level (0: no curve)
    mse_every: int = 10  # record the MSE every this many steps
    seed: int = 0  # first test-noise draw
    noise_seeds: int = 1  # independent test-noise draws per level (the spread in Fig. 3)
    tol: float | None = None  # stop an item once max|F(x)| < tol; null: integrate to t_eval

    def horizon(self, cfg: TrainConfig) -> float:
        """The evaluation horizon: ``t_eval``, else the model's own."""
        return cfg.t_eval if self.t_eval is None else self.t_eval

    def check(self, where: str) -> None:
        if not self.eps_test:
            raise ConfigError(f"{where}.eps_test: list at least one test-noise level")
        for eps in self.eps_test:
            if not 0.0 <= eps <= 1.0:
                raise ConfigError(f"{where}.eps_test: {eps} is not a noise level in [0, 1]")
        for key in ("t_eval", "tol"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ConfigError(f"{where}.{key} must be > 0 or null, got {value}")
        for key, low in (
            ("batch_size", 1),
            ("mse_items", 0),
            ("mse_every", 1),
            ("seed", 0),
            ("noise_seeds", 1),
        ):
            value = getattr(self, key)
            if value is not None and value < low:
                raise ConfigError(f"{where}.{key} must be >= {low}, got {value}")
