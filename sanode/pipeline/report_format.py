"""The formatting shared by the report renderers (product and lab): percentages, counts,
bucket triples, Markdown tables, the table files a block names, and the error a block raises."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd


class ReportError(ValueError):
    """A block names an unknown renderer or a table that does not exist."""


# -- formatting -----------------------------------------------------------------------------------
def _pct(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f} %"


def _int(value: Any) -> str:
    return f"{int(value):,}"


def _buckets(row: Any) -> str:
    return f"{_int(row['exact'])} / {_int(row['partial'])} / {_int(row['wrong'])}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _paths_and_options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """A block's arguments: the table paths, and the ``key=value`` options."""
    paths = [a for a in args if "=" not in a]
    return paths, dict(a.partition("=")[::2] for a in args if "=" in a)


def _files(root: Path, patterns: list[str]) -> list[Path]:
    if not patterns:
        raise ReportError("this block needs the table(s) it renders, e.g. results/...")
    found: list[Path] = []
    for pattern in patterns:
        hits = sorted(root.glob(pattern))
        if not hits:
            raise ReportError(f"no file matches {pattern!r} under {root}")
        found += hits
    return found


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# -- renderers --------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    big_whole = isinstance(value, float) and value.is_integer() and abs(value) >= 1000
    if isinstance(value, int) or big_whole:
        return f"{int(value):,}"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.4g}"
    return str(value)


def _frame(path: Path, key: str | None) -> pd.DataFrame:
    """A Parquet table, or a JSON list of rows (``key``: the list under that key)."""
    if path.suffix != ".json":
        return pd.read_parquet(path)
    rows = json.loads(path.read_text())
    if key is not None:
        rows = rows[key]
    return pd.DataFrame(rows)
