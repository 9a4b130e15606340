"""What ``auto`` chose on this machine, against every explicit choice timed in the same run.

:func:`sanode.core.precision.resolve` picks the training products and their route from one
timed product per candidate. Here each candidate runs whole training steps instead (the
recipe's step: Euler loop and its backward pass, A built in float32, Adam), in interleaved
rounds (a drift slower than a round hits every candidate alike), and ``auto``'s step is the
step of the candidate it chose, so ``share`` = fastest step / auto's step says how much of
the best explicit setting ``auto`` gets here (1.0: it chose the fastest).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..core.precision import PRODUCT_CANDIDATES, available, cpu_model, describe, label, resolve
from ..core.products import Products
from .bench import training_problem


def auto_versus_explicit(
    *,
    n: int = 784,
    k: int = 10,
    batch: int = 200,
    steps: int = 55,
    rounds: int = 3,
    measure: Any = None,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """``auto``'s choice for N = ``n``, ``batch`` (CPU, this process's threads) and the median
    step seconds of every available (products, route) candidate over ``rounds`` rounds."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    prec = resolve(
        "auto",
        None,
        loop="float32",
        coupling_dtype="float32",
        n=n,
        batch=batch,
        eval_batch=batch,
        measure=measure,
        cache_dir=cache_dir,
    )
    cands = [c for c in PRODUCT_CANDIDATES if available(*c)]
    runs = {}
    for name, route in cands:
        dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
        problem = training_problem(
            "sanode-a32",
            n=n,
            k=k,
            batch=batch,
            steps=steps,
            dtype=dtype,
            device=torch.device("cpu"),
        )
        problem.model.products = Products(name, route)
        problem.model.lapack = prec.lapack
        problem.step()  # warm-up
        runs[(name, route)] = problem.step
    seconds: dict[tuple[str, str], list[float]] = {c: [] for c in runs}
    for _ in range(rounds):
        for cand, step in runs.items():
            t0 = time.perf_counter()
            step()
            seconds[cand].append(time.perf_counter() - t0)
    medians = {c: statistics.median(s) for c, s in seconds.items()}
    fastest = min(medians, key=lambda c: medians[c])
    chosen = (prec.train.name, prec.train.route)
    return {
        "cpu": cpu_model(),
        "n": n,
        "batch": batch,
        "steps": steps,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "chosen": label(*chosen),
        "fastest": label(*fastest),
        "auto_step_s": medians[chosen],
        "fastest_step_s": medians[fastest],
        "share": medians[fastest] / medians[chosen],
        **{f"step_s {label(*c)}": t for c, t in medians.items()},
        "precision": prec.record(),
    }


def auto_line(result: dict[str, Any]) -> str:
    """``auto: bfloat16 (oneDNN) — step 0.101 s, 1.00 of the fastest (bfloat16, oneDNN)``."""
    chosen, fastest = result["chosen"].split("/"), result["fastest"].split("/")
    best = describe(*fastest).replace(" (", ", ").rstrip(")")
    return (
        f"auto: {describe(*chosen)} — step {result['auto_step_s']:.3f} s, "
        f"{result['share']:.2f} of the fastest ({best}) [{result['precision']['calibration']}]"
    )
