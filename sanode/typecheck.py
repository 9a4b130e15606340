"""The one type check of config values (light: the standard library only).

:func:`convert` checks a value read from a config file (YAML: plain numbers, strings, lists,
mappings) against a type annotation and names the key when it does not fit; a quoted number
such as ``"-5"`` is a string, not a number. Both the training settings
(:class:`sanode.config.TrainConfig`) and the pipeline's settings blocks
(:class:`sanode.pipeline.settings.Settings`) use it.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal


class ConfigError(ValueError):
    """A setting is unknown or out of range; the message names the key and the allowed values."""


SCALARS: dict[type, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    ),
    str: ("a string", lambda v: isinstance(v, str)),
}


def convert(where: str, value: Any, hint: Any, *, coerce: bool = True) -> Any:
    """``value`` checked against the type ``hint``; raises :class:`ConfigError` naming
    ``where``. With ``coerce`` it is also converted (list -> tuple, mapping -> the nested
    settings block's dataclass, int -> float); without, it is returned as given."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(where, value, arg, coerce=coerce)
            except ConfigError as err:
                errors.append(str(err).split(" must be ", 1)[-1].split(", got ")[0])
        wanted = " or ".join(errors) + (" or null" if type(None) in args else "")
        raise ConfigError(f"{where} must be {wanted}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        items = [convert(f"{where}[{i}]", v, args[0], coerce=coerce) for i, v in enumerate(value)]
        return tuple(items) if coerce else value
    if isinstance(hint, type) and hasattr(hint, "from_mapping"):  # a nested settings block
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return hint.from_mapping(value, where=where) if coerce else value
    if hint in SCALARS:
        name, ok = SCALARS[hint]
        if not ok(value):
            raise ConfigError(f"{where} must be {name}, got {value!r} ({type(value).__name__})")
        return float(value) if hint is float and coerce else value
    raise TypeError(f"{where}: unsupported settings type {hint!r}")  # a programming error
