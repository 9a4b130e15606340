"""The lab's report renderers: the bench, time to accuracy, the lever runs and their seeds,
the ablation (``<!-- report:NAME ARG ... -->`` blocks of README.md and docs/; the framework and
the product's renderers: :mod:`sanode.pipeline.report`). Registered as the ``sanode.renderers``
entry point ``lab`` (:data:`RENDERERS`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .report_levers import ablation, levers, seeds
from .report_speed import agreement, bench, eval_switches, matmul_ratio, tta, tta_ratio

RENDERERS: dict[str, Callable[[Path, list[str]], str]] = {
    "tta": tta,
    "tta_ratio": tta_ratio,
    "agreement": agreement,
    "eval_switches": eval_switches,
    "bench": bench,
    "matmul_ratio": matmul_ratio,
    "levers": levers,
    "seeds": seeds,
    "ablation": ablation,
}
