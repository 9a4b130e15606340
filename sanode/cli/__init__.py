"""Command line: ``sanode train``, ``evaluate``, ``classify``, ``check-config``, ``report``;
one module per command, each with ``add(sub)`` (its parser) and ``run(args, parser)``. The
lab's commands (``bench``, ``time-to-accuracy``, ``ablation``: :mod:`sanode.lab`) join them
as entry points of group ``sanode.commands``; the product imports nothing from the lab."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError
from . import check_config, classify, evaluate, report, train

COMMANDS = (train, check_config, classify, evaluate, report)


def commands() -> list:
    """The product's command modules, then those of the installed entry points (group
    ``sanode.commands``, e.g. the lab's), each with ``add(sub)`` and ``run(args, parser)``."""
    from importlib.metadata import entry_points

    found = list(COMMANDS)
    for point in sorted(entry_points(group="sanode.commands"), key=lambda p: p.name):
        found.append(point.load())
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sanode",
        description="Stable-attractor neural ODE classifiers (SA-nODE): train, evaluate, "
        "classify, measure, and render the docs' tables.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands():
        command.add(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The subparser of command ``name``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    return parser  # pragma: no cover - build_parser always adds the commands


def main(argv: list[str] | None = None) -> int:
    from ..data.raw import DataError
    from ..files import DiskFullError
    from ..training.train import DivergenceError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # the command's own parser: its errors show its usage, not the top-level one
        return args.func(args, _command_parser(parser, args.command))
    except (DataError, ConfigError, FileNotFoundError, ValueError) as err:  # ClassifyError too
        if args.debug:
            raise
        print(f"sanode: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"sanode: training diverged: {err}", file=sys.stderr)
        return 1
    except DiskFullError as err:
        print(f"sanode: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sanode: interrupted; the last checkpoint is kept, rerun to resume", file=sys.stderr)
        return 130
