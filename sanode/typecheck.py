"""The one type check of config values, and the settings base built on it (light: the
standard library only).

:func:`convert` checks a value read from a config file (YAML: plain numbers, strings, lists,
mappings) against a type annotation and names the key when it does not fit; a quoted number
such as ``"-5"`` is a string, not a number.

:class:`Settings` is the base of every typed, frozen settings block: the training settings
(:class:`sanode.config.TrainConfig`) and the pipeline's blocks (a study's ``evaluate`` block,
each analysis's block, :mod:`sanode.pipeline.settings`). A block's field defaults are its only
defaults; construction checks the types, ``from_mapping`` also rejects unknown keys and runs
the block's ``check`` of relations between fields.

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
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar


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
    if origin is dict:  # a free-form mapping (its keys strings; values checked elsewhere)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} must be a mapping of names, got {value!r}")
        if args and args[1] is not Any:
            return {k: convert(f"{where}.{k}", v, args[1], coerce=coerce) for k, v in value.items()}
        return value
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


S = TypeVar("S", bound="Settings")


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of a settings class (resolved once a class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of a typed, frozen settings block; subclasses add fields (and ``check``)."""

    # the block's key path in the config, for messages ("": the keys alone)
    where: ClassVar[str] = "settings"
    # from_mapping converts values (list -> tuple, int -> float, mapping -> nested block);
    # False: the values stay as given (only their types are checked)
    coerce: ClassVar[bool] = True
    # what an unknown key is called in the message
    unknown_words: ClassVar[str] = "unknown key(s)"

    def __post_init__(self) -> None:
        self.check_types(self.where)

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any] | None, where: str = "") -> S:
        """Build from a config block: unknown keys and wrong types raise :class:`ConfigError`
        (``<where>.<key>: ...``), missing keys take the field defaults."""
        where = where or cls.where
        values = dict(values or {})
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}{cls.unknown_words} {unknown}; allowed keys: {sorted(fields)}"
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {missing}")
        if cls.coerce:
            values = {k: convert(_key(where, k), v, hints[k]) for k, v in values.items()}
        settings = cls(**values)
        settings.check(where)
        return settings

    def check_types(self, where: str) -> None:
        """Every field against its annotation (values as they are: nothing is converted)."""
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            convert(_key(where, f.name), getattr(self, f.name), hints[f.name], coerce=False)

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


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation from the class source: its inline comment, else the
    comment lines right above it (one line: the command-line help of its flag)."""
    import inspect
    import re

    docs: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            block.append(text.lstrip("# ").strip())
            continue
        match = re.match(r"^(\w+): [^=]+=[^#]*(?:#\s*(.*))?$", text)
        if match and not text.startswith(("def ", "return")):
            doc = match[2] or " ".join(block)
            if doc:
                docs[match[1]] = doc
        block = []
    return docs
