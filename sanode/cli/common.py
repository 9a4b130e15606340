"""What the commands share: one flag per ``TrainConfig`` setting (its choices taken from
:data:`sanode.config.CHOICES`), a YAML reader with one-line errors, the bucket table."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ..config import CHOICES, PLACE_KEYS, RENAMED, ConfigError, TrainConfig, field_docs

NONE_WORDS = {"none", "null"}
CHECKPOINT_SUFFIXES = (".pt", ".pth")
EVAL_COLUMNS = [
    "eps_test",
    "noise_seed",
    "n",
    "exact",
    "partial",
    "wrong",
    "accuracy",
    "nearest_accuracy",
    "m_f",
    "work_fraction",
]


def field_parser(kind):
    """An argparse ``type`` for a dataclass field annotation (``float | None`` accepts 'none')."""
    args = typing.get_args(kind)
    optional = type(None) in args
    bases = [a for a in args if a is not type(None)] if args else [kind]

    def parse(text: str):
        if optional and text.lower() in NONE_WORDS:
            return None
        for base in bases[:-1]:  # ``int | str``: an int if it reads as one, else the text
            try:
                return base(text)
            except ValueError:
                pass
        return bases[-1](text)

    parse.__name__ = getattr(bases[0], "__name__", "value")
    return parse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field (read back by :func:`config_from_args`)."""
    hints = typing.get_type_hints(TrainConfig)
    docs = {k: _one_line(v) for k, v in field_docs(TrainConfig).items()}
    group = parser.add_argument_group("training settings (defaults from sanode.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{docs[f.name]} (default {f.default})",
            )
            continue
        is_union = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
        words = CHOICES.get(f.name)
        group.add_argument(
            flag,
            dest=f.name,
            type=field_parser(kind),
            default=None,
            choices=None if words is None else (*words, *([None] if is_union else [])),
            metavar=f.name.upper(),
            help=f"{docs[f.name]} ("
            + (f"one of {', '.join(words)}; " if words else "")
            + f"default {f.default}"
            + ("; 'none' to unset" if is_union else "")
            + ")",
        )
    for old, new in RENAMED.items():
        deprecated_alias(
            group,
            "--" + old.replace("_", "-"),
            "--" + new.replace("_", "-"),
            new,
            type=field_parser(hints[new]),
        )


class _Deprecated(argparse.Action):
    """An old flag name: sets the new flag's value and says, in one line, to use the new one."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"sanode: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """``old`` as a hidden alias of the flag ``new`` (same ``dest``) that prints one
    deprecation line when used."""
    parser.add_argument(
        old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS, default=None, **kwargs
    )


def _one_line(doc: str, limit: int = 160) -> str:
    """A field's documentation as one help line: its first sentence, at most ``limit``
    characters."""
    first = doc.split(". ")[0].split("; ")[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that trains takes: ``--config``, ``--quiet`` and one flag per
    ``TrainConfig`` setting."""
    parser.add_argument(
        "--config",
        help="YAML file of training settings, or a checkpoint (.pt) whose recipe to train again "
        "(e.g. results/search/models/mnist_winner.pt); flags override it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(parser)


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The ``--config`` file's settings, overridden by the flags given.

    A checkpoint as ``--config`` gives the settings its model was trained with, except where
    that run executed (:data:`PLACE_KEYS`: they take this machine's defaults): the recipe, e.g.
    a search winner's, trained again from another ``--seed``."""
    values = {}
    if args.config:
        path = Path(args.config)
        loaded: object
        if path.suffix in CHECKPOINT_SUFFIXES:
            loaded = checkpoint_settings(path, parser)
        else:
            loaded = load_yaml(path, parser, "--config") or {}
        if not isinstance(loaded, dict):
            parser.error(f"--config {path} must hold a mapping of training settings")
        values.update(loaded)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as err:
        parser.error(f"{args.config}: {err}" if args.config else str(err))
        raise  # unreachable: parser.error exits


def checkpoint_settings(path: Path, parser: argparse.ArgumentParser) -> dict:
    """The training settings a checkpoint's model was trained with, less :data:`PLACE_KEYS`;
    a missing or foreign file is one line."""
    from ..files import load_checkpoint

    try:
        payload = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as err:
        parser.error(f"--config {err}")
    settings = payload.get("config")
    if not isinstance(settings, dict):
        parser.error(f"--config {path} holds no training settings (no 'config' entry)")
    return {k: v for k, v in settings.items() if k not in PLACE_KEYS}


def load_yaml(path: Path, parser: argparse.ArgumentParser, flag: str) -> object:
    """The YAML document at ``path``; a missing file or a syntax error is one line naming the
    file and the line."""
    import yaml

    if not path.is_file():
        parser.error(f"{flag} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        parser.error(f"{flag} {path}{line}: not valid YAML ({getattr(err, 'problem', err)})")


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r[c]).rjust(widths[c]) for c in columns))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def eval_rows(model, cfg, split, eps_values, seed, tol=None) -> list[dict]:
    """The pipeline's evaluation (:func:`sanode.pipeline.robustness.score`: same noise draws for the
    same seed, same columns as the evaluate stage's accuracy table), without MSE curves."""
    from ..pipeline.robustness import score
    from ..pipeline.settings import EvaluateSettings

    settings = EvaluateSettings(eps_test=tuple(eps_values), seed=seed, tol=tol, mse_items=0)
    accuracy = score(model, cfg, split.x, split.y, settings).accuracy
    return [{k: _python(v) for k, v in row.items()} for row in accuracy.to_dict("records")]


def _python(value):
    return value.item() if hasattr(value, "item") else value


def optional_float(text: str) -> float | None:
    return None if text.lower() in NONE_WORDS else float(text)


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"noise levels lie in [0, 1], got {text}")
    return value
