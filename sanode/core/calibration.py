"""Timing the candidates of ``auto`` and caching the answer (:mod:`sanode.core.precision`
chooses): one (B, N) @ (N, N) product per product candidate, one solve per LAPACK route, the
fastest of a few calls within a budget; the times cached per (CPU model, torch version,
threads, shapes) in ``calibration.json`` under ``$SANODE_CACHE_DIR`` (default
``~/.cache/sanode``), any I/O problem read as an empty cache."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CACHE_ENV = "SANODE_CACHE_DIR"
CACHE_FILE = "calibration.json"
CACHE_FORMAT = 1
BUDGET_S = 0.04  # timing per candidate (after two warm-up calls), at most REPEATS calls
REPEATS = 12


@cache
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else :func:`platform.processor`), read
    once per process (training stamps it on every epoch)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _measure(kind: str, n: int, batch: int, dtype: str, labels: list[str]) -> dict[str, float]:
    """Seconds per call of each candidate (the fastest of a few calls after two warm-ups)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    loop = getattr(torch, dtype)
    if kind == "lapack":
        return _measure_lapack(n, loop, labels, gen)
    from .gemm import Weight

    x = torch.randn(batch, n, generator=gen, dtype=loop)
    w = torch.randn(n, n, generator=gen, dtype=loop) / n**0.5
    out: dict[str, float] = {}
    for key in labels:
        name, route = key.split("/")
        mixed = name == "bfloat16"  # the step's casts: the state in, the product out
        weight = Weight(w.to(torch.bfloat16) if mixed else w, batch, route)
        buf = torch.empty(batch, n, dtype=torch.bfloat16) if mixed else x

        def call(weight: Weight = weight, buf: torch.Tensor = buf, mixed: bool = mixed) -> None:
            if mixed:
                buf.copy_(x)
                weight(buf).to(loop)
            else:
                weight(buf)

        out[key] = _best_time(call)
    return out


def _measure_lapack(n: int, dtype: torch.dtype, labels: list[str], gen) -> dict[str, float]:
    import torch

    from .coupling import _solve

    phi = torch.randn(n, n, generator=gen, dtype=dtype) + n**0.5 * torch.eye(n, dtype=dtype)
    lu, pivots = torch.linalg.lu_factor(phi)
    rhs = torch.randn(n, n, generator=gen, dtype=dtype)
    out = {}
    for route in labels:

        def call(route=route) -> None:
            _solve(lu, pivots, rhs.clone(), route, adjoint=False)

        out[route] = _best_time(call)
    return out


def _best_time(call: Callable[[], None]) -> float:
    """The fastest of up to :data:`REPEATS` calls within :data:`BUDGET_S` (after two
    warm-ups): the least disturbed by whatever else the machine runs."""
    call()
    call()
    best, spent = float("inf"), 0.0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > BUDGET_S:
            break
    return best


def cache_dir() -> Path:
    """``$SANODE_CACHE_DIR``, else ``~/.cache/sanode``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sanode")


class _Cache:
    """The measured times by key in ``calibration.json``; any I/O problem reads as empty and
    writes nothing."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.path = Path(folder) / CACHE_FILE if folder is not None else cache_dir() / CACHE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> dict[str, float] | None:
        entry = self._load().get(key)
        if not isinstance(entry, dict):
            return None
        times = entry.get("times")
        ok = isinstance(times, dict) and all(isinstance(v, (int, float)) for v in times.values())
        return times if ok else None

    def put(self, key: str, times: dict[str, float]) -> None:
        entries = self._load()
        entries[key] = {"times": times, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        text = json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1, sort_keys=True)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".calibration-")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError:  # read-only or missing: the next run measures again
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
