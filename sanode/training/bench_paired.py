"""The bfloat16 training step's speed-up over float32 as a share of the products' own speed-up,
measured in interleaved rounds.

``sanode bench`` times each row once, minutes apart from its float32 row, and on a shared
machine the matrix-product speed drifts by tens of percent between rows. Here every round
times, back to back, one float32 step, one bfloat16 step and a block of (B, N) @ (N, N)
products in either dtype; each round gives its own step ratio and matmul ratio, and the
reported share is the median over rounds of ``(t_f32 / t_bf16) / (mm_f32 / mm_bf16)``, so a
drift slower than a round cancels.

The float32 reference is the float32 training step as a float32 run trains (A built in
float64); the bfloat16 step is the ``sanode-a32`` row (bfloat16 products, A in float32), the
recommended bfloat16 settings.
"""

from __future__ import annotations

import statistics
import time

import torch

from .bench import _training_setup

PAIRS = (("sanode", "float32"), ("sanode-a32", "bfloat16"))
_clock = time.perf_counter


def _mm_seconds(a: torch.Tensor, w: torch.Tensor, out: torch.Tensor, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, w, out=out)
    return (time.perf_counter() - t0) / reps


def paired_speedup(
    *, n: int = 784, k: int = 10, batch: int = 200, steps: int = 55, rounds: int = 7,
    mm_reps: int = 40,
) -> dict:  # fmt: skip
    """One row: medians (and ranges) over ``rounds`` interleaved rounds of the float32/bfloat16
    step time ratio, the matmul ratio and their quotient ``of_matmul_ratio`` (CPU)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    device = torch.device("cpu")
    runs = {}
    for variant, dtype in PAIRS:
        step, _ = _training_setup(variant, n=n, k=k, batch=batch, steps=steps,
                                  dtype=getattr(torch, dtype), device=device)  # fmt: skip
        step()  # warm-up
        runs[dtype] = step
    gen = torch.Generator().manual_seed(0)
    mats = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(batch, n, generator=gen).to(getattr(torch, dtype))
        w = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        mats[dtype] = (a, w, torch.empty(batch, n, dtype=a.dtype))
        _mm_seconds(*mats[dtype], 5)
    step_ratio: list[float] = []
    mm_ratio: list[float] = []
    share: list[float] = []
    seconds: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(rounds):
        t = {}
        for dtype, step in runs.items():
            t0 = _clock()
            step()
            t[dtype] = _clock() - t0
            seconds[dtype].append(t[dtype])
        mm = {dtype: _mm_seconds(*mats[dtype], mm_reps) for dtype in mats}
        step_ratio.append(t["float32"] / t["bfloat16"])
        mm_ratio.append(mm["float32"] / mm["bfloat16"])
        share.append(step_ratio[-1] / mm_ratio[-1])
    return {
        "steps": steps,
        "batch": batch,
        "rounds": rounds,
        "float32_step_s": statistics.median(seconds["float32"]),
        "bfloat16_step_s": statistics.median(seconds["bfloat16"]),
        "step_ratio": statistics.median(step_ratio),
        "matmul_ratio": statistics.median(mm_ratio),
        "of_matmul_ratio": statistics.median(share),
        "of_matmul_ratio_min": min(share),
        "of_matmul_ratio_max": max(share),
    }


def print_paired(rows: list[dict]) -> None:
    print(
        "paired rounds (float32 step with A in float64 | bfloat16 products with A in float32 | "
        "matmul blocks, back to back each round; medians over rounds):"
    )
    print(f"{'steps':>6} {'rounds':>6} {'f32 s':>7} {'bf16 s':>7} {'x f32':>6} {'mm x f32':>8} "
          f"{'of mm':>6} {'range':>11}")  # fmt: skip
    for r in rows:
        print(
            f"{r['steps']:>6} {r['rounds']:>6} {r['float32_step_s']:>7.3f} "
            f"{r['bfloat16_step_s']:>7.3f} {r['step_ratio']:>6.2f} {r['matmul_ratio']:>8.2f} "
            f"{r['of_matmul_ratio']:>6.2f} "
            f"{r['of_matmul_ratio_min']:>5.2f}-{r['of_matmul_ratio_max']:<5.2f}"
        )
