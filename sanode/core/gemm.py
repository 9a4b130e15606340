"""The loops' matrix products through oneDNN where torch's own CPU GEMM is the slower one.

torch multiplies float32 matrices on the CPU with MKL, which on AMD processors runs its
generic AVX2 kernels: on the 2-core AMD EPYC with AVX512-BF16 of ``docs/performance.md`` a
(200, 784) @ (784, 784) float32 product took 1.13-1.22 ms through ``torch.mm`` and
0.48-0.50 ms through oneDNN (torch's other CPU library, which has AVX512 kernels there), the
same float32 arithmetic (relative error 3.7e-7 against float64, 2.5e-7 for MKL's). bfloat16
products already run in oneDNN, but ``torch.mm`` re-lays out the fixed (N, N) operand for
every call; laid out once per pass (a packed weight) the same product took 0.26 ms instead of
0.33 ms.

* :class:`Weight`: ``x @ w`` for one fixed ``w`` and many ``x`` (an integration's steps), ``w``
  packed once for oneDNN's linear kernel;
* :func:`matmul`, :func:`addmm_`: a one-off float32 ``a @ b`` (operands may be transposed
  views; bfloat16 ones stay ``torch.mm``, faster without a packed operand);
* :func:`gemm_route`: the route, ``"onednn"`` or ``"torch"``, of one product. A run's route
  travels with its products (:class:`sanode.core.products.Products` ``route``, chosen by
  measuring this machine: :mod:`sanode.core.precision`) and is passed to every call here;
  ``"auto"`` (a value built without measuring) falls back to a rule: oneDNN for float32 and
  bfloat16 CPU products where torch's GEMM is MKL on an AMD processor, and products of at
  least :data:`MIN_SIZE` entries; torch everywhere else (CUDA, float64, other CPUs);
  There is no process-wide switch: a bench that compares routes passes each one.

The routes round differently (another summation order), so a seed's training trajectory
depends on the route; it is recorded with every run (``gemm`` in time-to-accuracy results,
the ``sanode.gemm`` MLflow tag). No autograd: these serve the hand-written passes.
"""

from __future__ import annotations

import functools

import torch

ROUTES = ("auto", "onednn", "torch")
MIN_SIZE = 256 * 256  # entries of the fixed operand (Weight) or of the result (matmul)


def gemm_route(
    device: torch.device, dtype: torch.dtype, size: int = MIN_SIZE, route: str = "auto"
) -> str:
    """The route (``"onednn"`` or ``"torch"``) of a ``dtype`` product on ``device`` whose fixed
    operand (or result) has ``size`` entries, asked for as ``route`` (``"onednn"``,
    ``"torch"``, or ``"auto"``: the rule of the module docstring). oneDNN needs this torch's
    oneDNN linear kernels (:func:`onednn_available`), and for bfloat16 a CPU it has bfloat16
    kernels for (:func:`sanode.core.products.native_bfloat16`; an AVX2-only CPU has none and
    oneDNN refuses to pack a bfloat16 weight there); without them the route is torch's."""
    from .products import native_bfloat16

    if route not in ROUTES:
        raise ValueError(f"unknown GEMM route {route!r}; choose one of {list(ROUTES)}")
    if (
        device.type != "cpu"
        or dtype not in (torch.float32, torch.bfloat16)
        or not onednn_available()
        or (dtype == torch.bfloat16 and not native_bfloat16())
    ):
        return "torch"
    if route != "auto":
        return route
    return "onednn" if size >= MIN_SIZE and _mkl_on_amd() else "torch"


@functools.cache
def onednn_available() -> bool:
    """Whether this torch has oneDNN's linear kernels (a build for x86 CPUs with oneDNN)."""
    try:
        ops = torch.ops.mkldnn
        return bool(torch.backends.mkldnn.is_available()) and all(
            hasattr(ops, name) for name in ("_linear_pointwise", "_reorder_linear_weight")
        )
    except (AttributeError, RuntimeError):  # pragma: no cover - a build without oneDNN
        return False


@functools.cache
def _mkl_on_amd() -> bool:
    """Whether torch's CPU GEMM is MKL on an AMD processor (Linux: /proc/cpuinfo's vendor)."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:  # pragma: no cover - not Linux
        pass
    return False


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight^T`` through oneDNN's linear kernel (weight packed or plain (N_out, N_in))."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it is row- or column-major without gaps, else a contiguous copy: oneDNN runs
    other strides (e.g. a column slice of a wider matrix) through a reference kernel, 2,000x
    slower (4.8 s for a 784 x 784 x 774 product here)."""
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


class Weight:
    """``x @ w`` for a fixed (K, N) ``w`` (float32 or bfloat16) and many (B, K) ``x`` in its
    dtype: oneDNN with ``w`` packed once (``batch``: the expected B, a layout hint; any B
    works), or ``torch.mm``."""

    def __init__(self, w: torch.Tensor, batch: int, route: str = "auto") -> None:
        self.w = w
        self.route = gemm_route(w.device, w.dtype, w.numel(), route)
        self.packed = None
        if self.route == "onednn":
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), batch)

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) ``x @ w``: into ``out`` on the torch route, a new tensor on oneDNN's (whose
        kernel writes its own; ``out`` is then not written)."""
        if self.packed is None:
            return torch.mm(x, self.w, out=out) if out is not None else torch.mm(x, self.w)
        return _linear(_dense(x), self.packed)


def _one_off(a: torch.Tensor, b: torch.Tensor, route: str) -> bool:
    """Whether a one-off float32 product takes oneDNN's route (bfloat16 ones stay torch.mm:
    without a packed operand oneDNN's kernel took 1.25-1.35x torch.mm's time for them here)."""
    return (
        a.dtype == torch.float32
        and gemm_route(a.device, a.dtype, a.shape[0] * b.shape[1], route) == "onednn"
    )


def matmul(a: torch.Tensor, b: torch.Tensor, route: str = "auto") -> torch.Tensor:
    """(M, N) ``a @ b`` for (M, K) ``a`` and (K, N) ``b`` of one dtype (either may be a
    transposed view), through :func:`gemm_route`'s route (float32); a new tensor."""
    if _one_off(a, b, route):
        return _linear(_dense(a), _dense(b).t())
    return torch.mm(a, b)


def addmm_(
    c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, route: str = "auto"
) -> torch.Tensor:
    """``c += alpha * (a @ b)`` in place (shapes and views as in :func:`matmul`); returns c."""
    if _one_off(a, b, route):
        return c.add_(_linear(_dense(a), _dense(b).t()), alpha=alpha)
    return c.addmm_(a, b, alpha=alpha)
