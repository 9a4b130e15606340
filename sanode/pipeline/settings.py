"""Typed, frozen settings blocks of the pipeline config (light: no torch, pandas or Ray).

A block (the ``evaluate`` block of a study, the block of one analysis) is a frozen dataclass
deriving from :class:`Settings`; its field defaults are the only defaults of the block (the
JSON schema's ``default`` entries are checked against them by a test). ``from_mapping`` is
the one unknown-key and type check: lists become tuples, nested blocks their dataclass.

Example::

    @dataclass(frozen=True)
    class Fig4(Settings):
        study: str
        items: int = 2000
        eps_test: tuple[float, ...] = (0.0, 0.3)

    Fig4.from_mapping({"study": "letters", "items": 10})
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..typecheck import ConfigError, convert

if TYPE_CHECKING:
    from ..config import TrainConfig

S = TypeVar("S", bound="Settings")


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of a typed, frozen settings block; subclasses add fields (and ``check``)."""

    where: ClassVar[str] = "settings"  # the block's key path in the config, for messages

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any] | None, where: str = "") -> S:
        """Build from a config block: unknown keys and wrong types raise :class:`ConfigError`
        (``<where>.<key>: ...``), missing keys take the field defaults."""
        where = where or cls.where
        values = dict(values or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed keys: {sorted(fields)}")
        missing = [
            name
            for name, f in fields.items()
            if name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {missing}")
        converted = {k: convert(f"{where}.{k}", v, hints[k]) for k, v in values.items()}
        settings = cls(**converted)
        settings.check(where)
        return settings

    def check(self, where: str) -> None:
        """Relations between fields; raise :class:`ConfigError` (``<where>.<key>: ...``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts): what the digest, MLflow and JSON see."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default of every field that has one (plain data)."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = _plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = _plain(f.default_factory())
        return out


@dataclasses.dataclass(frozen=True)
class EvaluateSettings(Settings):
    """A study's ``evaluate`` block: how the evaluate stage (and ``sanode evaluate``) scores a
    selected model over the test-noise grid."""

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
        for key, low in (("batch_size", 1), ("mse_items", 0), ("mse_every", 1), ("seed", 0),
                         ("noise_seeds", 1)):  # fmt: skip
            value = getattr(self, key)
            if value is not None and value < low:
                raise ConfigError(f"{where}.{key} must be >= {low}, got {value}")
