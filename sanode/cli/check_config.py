"""``sanode check-config``: validate pipeline config files, one line per problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import load_yaml

NAME = "check-config"


def add(sub) -> None:
    p = sub.add_parser(
        NAME,
        help="validate pipeline config files: one line per problem (file, line or key, fix)",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="pipeline config file(s) (YAML)")
    p.add_argument(
        "--schema",
        help="the JSON schema to check against (default: workflow/schemas/config.schema.yaml "
        "of this checkout, whatever the current folder)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..config import ConfigError
    from ..pipeline.validate import default_schema, validate_config

    schema = Path(args.schema) if args.schema else default_schema()
    if not schema.is_file():
        why = (
            "" if args.schema else ": this sanode runs outside its checkout, which holds the schema"
        )
        parser.error(
            f"the schema {schema} does not exist{why}; pass --schema with the path of "
            "workflow/schemas/config.schema.yaml of the sanode repository"
        )
    for path in map(Path, args.configs):
        config = load_yaml(path, parser, "config")
        if not isinstance(config, dict):
            parser.error(f"config {path}: must hold a mapping (project, studies, ...)")
        try:
            validate_config(config, schema=schema, source=str(path))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 2
        print(f"{path}: valid")
    return 0
