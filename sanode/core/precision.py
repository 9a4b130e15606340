"""The precision of a run as one value, and ``auto`` chosen by measuring the machine.

A run's arithmetic is five choices: the training loop's (B, N) @ (N, N) products, those of
evaluation (:mod:`sanode.core.products` names), the dtype A is built in for training, the
route of the products (``torch.mm`` or oneDNN's packed kernel, :mod:`sanode.core.gemm`) and
the LAPACK of A's solves (OpenBLAS or torch, :mod:`sanode.core.coupling`). :class:`Precision`
holds all five; the model carries them (no process-wide switch), and every run records them
(:meth:`Precision.record`: checkpoint, MLflow tags, bench and time-to-accuracy JSON).

Where a setting says ``auto`` on the CPU, :func:`resolve` times the candidates on the run's
own shapes (N, batch) and threads, in well under a second, and takes the fastest:

* products: float32 through ``torch.mm``, float32 through oneDNN (where torch has its kernels),
  bfloat16 through either (where oneDNN multiplies bfloat16 at all); an explicit product
  name keeps its dtype and only its route is measured. One product is timed with the casts
  a bfloat16 step does (the float32 state to bfloat16 and the result back), so emulated
  bfloat16 (an AVX512F CPU without AVX512-BF16 / AMX: 33 against 140 GFLOP/s) loses to
  float32 there;
* A's solves: torch's ``lu_solve`` against scipy's OpenBLAS (only where
  :func:`sanode.core.lapack_env.in_force`; without those thread settings the two libraries'
  threads spin against each other in a training step, which a solve timed alone hides).

A candidate earlier in :data:`PRODUCT_CANDIDATES` (float32 before bfloat16, torch before
oneDNN) is kept while it is within :data:`MARGIN` of the fastest, so timing noise does not
flip a choice between equals and the choice is always at least 0.95 of the fastest. The
answer is cached per (CPU model, torch version, threads, shapes) in ``calibration.json``
under ``$SANODE_CACHE_DIR`` (default ``~/.cache/sanode``); a missing, unreadable or read-only
folder only means measuring again. On CUDA, ``auto`` is bfloat16 where the device supports
it, the routes torch's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .calibration import CACHE_ENV as CACHE_ENV
from .calibration import CACHE_FILE as CACHE_FILE
from .calibration import CACHE_FORMAT as CACHE_FORMAT
from .calibration import _Cache, _measure, cpu_model
from .calibration import cache_dir as cache_dir
from .products import AUTO, TWO_PARTS, Products, native_bfloat16, problem

if TYPE_CHECKING:
    import torch

# (products, route) in order of preference: a later one must be faster by more than MARGIN
PRODUCT_CANDIDATES = (
    ("float32", "torch"),
    ("float32", "onednn"),
    ("bfloat16", "onednn"),
    ("bfloat16", "torch"),
)
LAPACK_CANDIDATES = ("torch", "openblas")
GEMM_ROUTES = ("auto", "torch", "onednn")
LAPACK_ROUTES = ("auto", "torch", "openblas")
MARGIN = 0.05  # a preferred candidate stays chosen within 5 % of the fastest

# measure(kind, n, batch, dtype, candidates) -> seconds per call of each candidate label
Measure = Callable[[str, int, int, str, list[str]], dict[str, float]]


def label(products: str, route: str) -> str:
    """``"bfloat16/onednn"``: a product candidate's key in the measured times."""
    return f"{products}/{route}"


def describe(products: str, route: str) -> str:
    """``"bfloat16 (oneDNN)"``: a product candidate as people read it."""
    return f"{products} ({'torch.mm' if route == 'torch' else 'oneDNN'})"


@dataclass(frozen=True)
class Precision:
    """The arithmetic of one run: training and evaluation products (each with its route),
    the dtype A is built in for training, the LAPACK of A's solves; ``times``: the seconds per
    call of each candidate measured for this choice (``"train:float32/torch"`` at the
    training batch, ``"eval:bfloat16/onednn"`` at the evaluation batch, ``"lapack:openblas"``;
    empty where nothing was measured); ``source``: ``"measured"``,
    ``"cache"``, ``"settings"`` (nothing said auto) or ``"cuda"``."""

    train: Products
    eval: Products
    coupling_dtype: str = "float64"
    lapack: str = "auto"
    times: Mapping[str, float] = field(default_factory=dict)
    source: str = "settings"

    def record(self) -> dict[str, Any]:
        """Plain data of the value under its one set of names (checkpoint, JSON, MLflow)."""
        return {
            "train_products": self.train.name,
            "train_route": self.train.route,
            "eval_products": self.eval.name,
            "eval_route": self.eval.route,
            "coupling_dtype": self.coupling_dtype,
            "lapack": self.lapack,
            "calibration": self.source,
            "times_ms": {k: round(v * 1e3, 4) for k, v in sorted(self.times.items())},
        }

    def summary(self) -> str:
        """One line: ``training bfloat16 (oneDNN), evaluation float32 (torch.mm), A in
        float32, solves torch (measured)``."""
        return (
            f"training {describe(self.train.name, self.train.route)}, evaluation "
            f"{describe(self.eval.name, self.eval.route)}, A in {self.coupling_dtype}, solves "
            f"{self.lapack} ({self.source})"
        )


def resolve(
    train: str | None,
    evaluation: str | None,
    *,
    loop: str = "float32",
    coupling_dtype: str = "float64",
    gemm: str = "auto",
    lapack: str = "auto",
    n: int,
    batch: int,
    eval_batch: int,
    device: torch.device | str | None = None,
    measure: Measure | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Precision:
    """The :class:`Precision` that settings mean on ``device`` (None: the CPU) for a model of
    N = ``n`` nodes trained in batches of ``batch`` and evaluated in batches of ``eval_batch``.

    ``train`` / ``evaluation``: product names (None: the loop dtype; ``auto``: the fastest
    measured); ``gemm`` / ``lapack``: routes (``auto``: the fastest measured). ``measure``
    replaces the timing (tests); ``cache_dir`` the cache folder."""
    import torch

    for key, value, allowed in (("gemm", gemm, GEMM_ROUTES), ("lapack", lapack, LAPACK_ROUTES)):
        if value not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type != "cpu":
        return Precision(
            _fixed(train, loop, training=True, device=dev),
            _fixed(evaluation, loop, training=False, device=dev),
            coupling_dtype,
            "torch",
            source="cuda" if dev.type == "cuda" else "settings",
        )
    chooser = _Chooser(measure or _measure, cache_dir)
    train_p = chooser.products(train, loop, gemm, n=n, batch=batch, training=True)
    eval_p = chooser.products(evaluation, loop, gemm, n=n, batch=eval_batch, training=False)
    route = chooser.lapack(lapack, coupling_dtype, n) if lapack == AUTO else lapack
    return Precision(train_p, eval_p, coupling_dtype, route, chooser.times, chooser.source)


def measured(
    name: str | None,
    loop: str,
    *,
    n: int,
    training: bool,
    batch: int | None = None,
    measure: Measure | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Products:
    """The CPU products a setting means for N = ``n`` nodes, measured where it is ``auto``
    (``batch``: default 200 for training, 2,000 for evaluation, the config's defaults)."""
    batch = batch or (200 if training else 2000)
    chooser = _Chooser(measure or _measure, cache_dir)
    return chooser.products(name, loop, AUTO, n=n, batch=batch, training=training)


def _fixed(name: str | None, loop: str, *, training: bool, device: torch.device) -> Products:
    """Products on a device where nothing is measured: the settings' rule (CUDA: bfloat16 for
    auto where the device supports it), routes torch."""
    parsed = Products.parse(name, loop, training=training, device=device)
    return Products(parsed.name, "torch")


class _Chooser:
    """The choices of one :func:`resolve`, sharing measured times (and the cache)."""

    def __init__(self, measure: Measure, cache_dir: str | os.PathLike | None) -> None:
        self.measure = measure
        self.cache = _Cache(cache_dir)
        self.times: dict[str, float] = {}
        self.sources: set[str] = set()

    @property
    def source(self) -> str:
        return (
            "measured" if "measured" in self.sources else ("cache" if self.sources else "settings")
        )

    def _timed(
        self, kind: str, n: int, batch: int, dtype: str, labels: list[str], role: str
    ) -> dict:
        import torch

        key = (
            f"{cpu_model()} | torch {torch.__version__} | threads {torch.get_num_threads()}"
            f" | {kind} {dtype} n={n} batch={batch}"
        )
        times = self.cache.get(key)
        if times is None or not set(labels) <= set(times):
            times = self.measure(kind, n, batch, dtype, labels)
            self.cache.put(key, times)
            self.sources.add("measured")
        else:
            self.sources.add("cache")
        self.times.update({f"{role}:{k}": float(times[k]) for k in labels})
        return {k: float(times[k]) for k in labels}

    def products(
        self, name: str | None, loop: str, gemm: str, *, n: int, batch: int, training: bool
    ) -> Products:
        """The products ``name`` means on the CPU, with the route measured where it is auto."""
        chosen = loop if name is None else name
        if chosen == AUTO:
            names = ("float32", "bfloat16") if loop == "float32" else (loop,)
        else:
            why = problem(chosen, loop, training=training)
            if why is not None:
                raise ValueError(f"products {why}")
            names = ("bfloat16",) if chosen == TWO_PARTS else (chosen,)
        cands = [(p, r) for p, r in PRODUCT_CANDIDATES if p in names and available(p, r)]
        if gemm != AUTO and cands:
            cands = [(p, r) for p, r in cands if r == gemm] or [(names[0], gemm)]
        if not cands:  # float64 (no candidate to measure): torch's own product
            return Products(loop if chosen == AUTO else chosen, "torch")
        if len(cands) == 1:
            best = cands[0]
        else:
            role = "train" if training else "eval"
            times = self._timed("products", n, batch, loop, [label(*c) for c in cands], role)
            best = pick(cands, [times[label(*c)] for c in cands])
        name_out = best[0] if chosen == AUTO else chosen
        return Products(name_out, best[1])

    def lapack(self, setting: str, dtype: str, n: int) -> str:
        cands = [r for r in LAPACK_CANDIDATES if lapack_available(r, dtype)]
        if len(cands) == 1:
            return cands[0]
        times = self._timed("lapack", n, n, dtype, cands, "lapack")
        return pick(cands, [times[c] for c in cands])


def pick(candidates: list, times: list[float]) -> Any:
    """The first candidate (in order of preference) whose time is within :data:`MARGIN` of the
    fastest: never one slower than 1 / (1 - MARGIN) of the fastest."""
    fastest = min(times)
    for cand, t in zip(candidates, times, strict=True):
        if t * (1.0 - MARGIN) <= fastest:
            return cand
    raise AssertionError("unreachable: the fastest candidate is within any margin")


def available(products: str, route: str) -> bool:
    """Whether this torch can run the product candidate on the CPU at all."""
    from . import gemm

    if route == "onednn" and not gemm.onednn_available():
        return False
    if products == "bfloat16":  # oneDNN multiplies bfloat16 here (natively or emulated)
        return native_bfloat16(None)
    return True


def lapack_available(route: str, dtype: str) -> bool:
    """Whether A's solves can take ``route`` here (OpenBLAS: scipy and the thread settings)."""
    import torch

    from . import coupling, lapack_env

    if route == "torch":
        return True
    return coupling._getrs(getattr(torch, dtype)) is not None and lapack_env.in_force()
