"""The bfloat16 training step's speed-up over float32 as a share of the products' own speed-up,
measured in interleaved rounds.

``sanode bench`` times each row once, minutes apart from its float32 row, and on a shared
machine the matrix-product speed drifts by tens of percent between rows. Here every round
times, back to back, one float32 step, one bfloat16 step and a block of (B, N) @ (N, N)
products in either dtype; each round gives its own step ratio and matmul ratio, and the
reported share is the median over rounds of ``(t_f32 / t_bf16) / (mm_f32 / mm_bf16)``, so a
drift slower than a round cancels.

The matmul blocks are the products as the loops run them (:class:`sanode.core.gemm.Weight`:
oneDNN with the fixed operand packed once where :func:`~sanode.core.gemm.gemm_route` takes it,
e.g. float32 on an AMD processor, whose MKL GEMM runs at about half oneDNN's speed there);
``torch_matmul_ratio`` is the same ratio through ``torch.mm`` in both dtypes, and
``of_torch_matmul_ratio`` the step ratio's share of that.

The float32 reference is the float32 training step as a float32 run trains (A built in
float64); the bfloat16 step is the ``sanode-a32`` row (bfloat16 products, A in float32), the
recommended bfloat16 settings; the fused step is ``sanode-fused`` (the same with each Euler
step's elementwise work as one compiled kernel, ``fuse_steps``), timed in the same rounds.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

from ..core.coupling import lapack_route
from ..core.gemm import Weight, gemm_route
from .bench import _training_setup

# (label, bench variant, product dtype): the float32 reference and the two bfloat16 steps
STEPS = (
    ("float32", "sanode", "float32"),
    ("bfloat16", "sanode-a32", "bfloat16"),
    ("fused", "sanode-fused", "bfloat16"),
)
_clock = time.perf_counter


def _mm_seconds(a: torch.Tensor, w: Weight | torch.Tensor, out: torch.Tensor, reps: int) -> float:
    """Seconds of one ``a @ w``: ``w`` a :class:`~sanode.core.gemm.Weight` (the loops' route)
    or a tensor (``torch.mm``)."""
    mm = w if isinstance(w, Weight) else functools.partial(torch.mm, mat2=w)
    t0 = time.perf_counter()
    for _ in range(reps):
        mm(a, out=out)
    return (time.perf_counter() - t0) / reps


def paired_speedup(
    *,
    n: int = 784,
    k: int = 10,
    batch: int = 200,
    steps: int = 55,
    rounds: int = 7,
    mm_reps: int = 40,
    gemm: str = "auto",
    lapack: str = "auto",
) -> dict:
    """One row: medians (and ranges) over ``rounds`` interleaved rounds of the float32/bfloat16
    step time ratio, the matmul ratio and their quotient ``of_matmul_ratio`` (CPU); the same
    for the fused bfloat16 step (``fused_*``). ``gemm`` / ``lapack``: the routes of every
    step's products and solves and of the loops' matmul blocks."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    device = torch.device("cpu")
    runs = {}
    for label, variant, dtype in STEPS:
        step, _ = _training_setup(
            variant,
            n=n,
            k=k,
            batch=batch,
            steps=steps,
            dtype=getattr(torch, dtype),
            device=device,
            gemm=gemm,
            lapack=lapack,
        )
        step()  # warm-up (the fused step: its compilation)
        runs[label] = step
    gen = torch.Generator().manual_seed(0)
    mats: dict[str, tuple[torch.Tensor, Weight | torch.Tensor, torch.Tensor]] = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(batch, n, generator=gen).to(getattr(torch, dtype))
        w = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        # the products as the loops run them, and torch.mm's
        mats[dtype] = (a, Weight(w, batch, gemm), torch.empty(batch, n, dtype=a.dtype))
        mats["torch-" + dtype] = (a, w, mats[dtype][2])
    for mat in mats.values():
        _mm_seconds(*mat, 5)
    mm_ratio: list[float] = []
    torch_ratio: list[float] = []
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, step in runs.items():
            t0 = _clock()
            step()
            seconds[label].append(_clock() - t0)
        mm = {dtype: _mm_seconds(*mat, mm_reps) for dtype, mat in mats.items()}
        mm_ratio.append(mm["float32"] / mm["bfloat16"])
        torch_ratio.append(mm["torch-float32"] / mm["torch-bfloat16"])
    row: dict = {
        "steps": steps,
        "batch": batch,
        "rounds": rounds,
        "lapack": lapack_route(device, torch.float32, lapack),
        "gemm": gemm_route(device, torch.float32, n * n, gemm),
    }
    row.update({f"{label}_step_s": statistics.median(seconds[label]) for label in runs})
    row["matmul_ratio"] = statistics.median(mm_ratio)
    row["torch_matmul_ratio"] = statistics.median(torch_ratio)
    for prefix, label in (("", "bfloat16"), ("fused_", "fused")):
        # each round's own step ratio over its own matmul ratio
        ratio = [f / b for f, b in zip(seconds["float32"], seconds[label], strict=True)]
        share = [r / m for r, m in zip(ratio, mm_ratio, strict=True)]
        row[f"{prefix}step_ratio"] = statistics.median(ratio)
        row[f"{prefix}of_matmul_ratio"] = statistics.median(share)
        row[f"{prefix}of_matmul_ratio_min"] = min(share)
        row[f"{prefix}of_matmul_ratio_max"] = max(share)
        row[f"{prefix}of_torch_matmul_ratio"] = statistics.median(
            [r / m for r, m in zip(ratio, torch_ratio, strict=True)]
        )
    return row


def print_paired(rows: list[dict]) -> None:
    print(
        "paired rounds (float32 step with A in float64 | bfloat16 products with A in float32 | "
        "the same, fused steps | matmul blocks, back to back each round; medians over rounds; "
        f"coupling solves: {rows[0]['lapack'] if rows else '-'}, products: "
        f"{rows[0]['gemm'] if rows else '-'}; torch.mm's ratio beside the loops' products'):"
    )
    print(
        f"{'steps':>6} {'rounds':>6} {'f32 s':>7} {'mm x f32':>8} {'step':>6} {'s':>7} "
        f"{'x f32':>6} {'of mm':>6} {'range':>11} {'torch.mm':>8} {'of it':>6}"
    )
    for r in rows:
        for prefix, label in (("", "bfloat16"), ("fused_", "fused")):
            print(
                f"{r['steps']:>6} {r['rounds']:>6} {r['float32_step_s']:>7.3f} "
                f"{r['matmul_ratio']:>8.2f} {label:>6} {r[f'{label}_step_s']:>7.3f} "
                f"{r[f'{prefix}step_ratio']:>6.2f} {r[f'{prefix}of_matmul_ratio']:>6.2f} "
                f"{r[f'{prefix}of_matmul_ratio_min']:>5.2f}-"
                f"{r[f'{prefix}of_matmul_ratio_max']:<5.2f} {r['torch_matmul_ratio']:>8.2f} "
                f"{r[f'{prefix}of_torch_matmul_ratio']:>6.2f}"
            )
