"""The numbers of README.md and docs/ rendered from the tables the project writes.

A generated block in a Markdown file is

    <!-- report:NAME ARG ... -->
    (rendered Markdown, replaced on every run)
    <!-- /report -->

``NAME`` picks a renderer of :data:`RENDERERS`; ``ARG`` are paths (globs) under the project
root of the committed tables it reads (``results/**``: Parquet tables of the pipeline, JSON of
``sanode bench`` / ``sanode time-to-accuracy``). ``sanode report`` rewrites every block of
:data:`DOC_FILES`; ``sanode report --check`` changes nothing and fails when a file is out of
date, which ``make test`` runs, so a committed number cannot disagree with its table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .report_format import ReportError as ReportError
from .report_format import _rel
from .report_tables import (
    census,
    columns,
    noise,
    robustness,
    secv,
    sensitivity,
    stage_times,
    trials,
)

DOC_FILES = ("README.md", "docs/*.md", "docs/journal/*.md")
BLOCK = re.compile(
    r"(?P<open><!-- report:(?P<name>[\w-]+)(?P<args>[^\n]*?) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /report -->)",
    re.S,
)
OPENING = re.compile(r"<!-- report:")  # every one must open a block that BLOCK parses


# the product's renderers; the lab adds its own (bench, time to accuracy, ablation) as the
# entry points of group "sanode.renderers" (pyproject.toml), found by renderers()
RENDERERS: dict[str, Callable[[Path, list[str]], str]] = {
    "stage_times": stage_times,
    "columns": columns,
    "secv": secv,
    "sensitivity": sensitivity,
    "trials": trials,
    "census": census,
    "noise": noise,
    "robustness": robustness,
}


# -- files ------------------------------------------------------------------------------------
def renderers() -> dict[str, Callable[[Path, list[str]], str]]:
    """The product's renderers and those of the installed entry points (group
    ``sanode.renderers``: each a mapping of block name -> renderer, e.g. the lab's)."""
    from importlib.metadata import entry_points

    found = dict(RENDERERS)
    for point in entry_points(group="sanode.renderers"):
        found.update(point.load())
    return found


def render_text(text: str, root: Path, *, where: str = "") -> str:
    """``text`` with every generated block rendered afresh from the tables under ``root``."""
    known = renderers()

    def one(match: re.Match) -> str:
        name, args = match["name"], match["args"].split()
        if name not in known:
            raise ReportError(f"{where}: unknown block report:{name}; known: {sorted(known)}")
        try:
            body = known[name](root, args)
        except ReportError as err:
            raise ReportError(f"{where}: report:{name}: {err}") from None
        return f"{match['open']}{body.rstrip()}\n{match['close']}"

    _check_openings(text, where)
    return BLOCK.sub(one, text)


def _check_openings(text: str, where: str) -> None:
    """Every ``<!-- report:`` opens a block (its arguments and `` -->`` on one line, then a
    ``<!-- /report -->``): one that does not would be left as it is, silently stale."""
    starts = {m.start() for m in BLOCK.finditer(text)}
    for m in OPENING.finditer(text):
        if m.start() not in starts:
            line = text.count("\n", 0, m.start()) + 1
            opening = text[m.start() :].partition("\n")[0]
            raise ReportError(
                f"{where or 'text'}, line {line}: a report block that does not parse: "
                f"{opening!r}; write it as "
                "'<!-- report:NAME ARG ... -->', a line break, and a closing '<!-- /report -->'"
            )


def doc_files(root: Path) -> list[Path]:
    return [p for pattern in DOC_FILES for p in sorted(root.glob(pattern)) if p.is_file()]


def render(root: str | Path = ".", *, write: bool = True) -> list[Path]:
    """Render every block of :data:`DOC_FILES`; returns the files whose text changed (written
    only with ``write``)."""
    root = Path(root).resolve()
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        new = render_text(text, root, where=_rel(root, path))
        if new != text:
            changed.append(path)
            if write:
                path.write_text(new)
    return changed
