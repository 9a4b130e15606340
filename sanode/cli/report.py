"""``sanode report``: README.md's and docs/'s tables rendered again from ``results/**``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "report"


def add(sub) -> None:
    p = sub.add_parser(
        NAME,
        help="render the tables of README.md and docs/ from the results (between report markers)",
    )
    p.add_argument("--root", default=".", help="project root (default: the current folder)")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is out of date"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..pipeline.report import doc_files, render

    root = Path(args.root)
    changed = render(root, write=not args.check)
    rel = [str(p.relative_to(root.resolve())) for p in changed]
    if args.check:
        if rel:
            print(
                f"out of date with the tables: {', '.join(rel)}; run `sanode report` and "
                "commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{len(doc_files(root))} file(s) agree with the tables")
        return 0
    print(f"rewrote {', '.join(rel)}" if rel else "every generated block was up to date")
    return 0
