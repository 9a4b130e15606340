"""Does ``torch.compile`` pay for the Euler step's elementwise work on this CPU?

One forward Euler step with bfloat16 products is, in eager mode, five elementwise passes over
the (B, N) float32 state around one bfloat16 product: the cubic term (addcmul, mul), the cast
of the operand, the sum with the product and the clamp. Inductor can fuse the passes before
the product into one kernel (cubic term and cast) and the two after it into another. This
script times, back to back in rounds, the eager step and the compiled one (the product
outside the compiled regions, as oneDNN runs it), and the compile time, and writes a JSON.

    python sanode/lab/scripts/compile_step.py results/bench/compile-step.json \
        [--steps 600] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def pre(x: torch.Tensor, p: torch.Tensor, q: float):
    """(x * (p - q x^2), x in bfloat16): the work before the product."""
    return x * (p - q * x * x), x.to(torch.bfloat16)


def post(base: torch.Tensor, prod: torch.Tensor, clip: float) -> torch.Tensor:
    """clamp(base + prod): the work after the product."""
    return (base + prod).clamp(-clip, clip)


def eager_loop(x, w, p, q, clip, steps, tmp, lo, res, out):
    for _ in range(steps):
        torch.addcmul(p, x, x, value=-q, out=tmp)
        tmp.mul_(x)
        lo.copy_(x)
        torch.mm(lo, w, out=res)
        torch.add(tmp, res, out=out)
        out.clamp_(-clip, clip)
        x, out = out, x
    return x


def compiled_loop(cpre, cpost, x, w, p, q, clip, steps):
    for _ in range(steps):
        base, xl = cpre(x, p, q)
        x = cpost(base, torch.mm(xl, w), clip)
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--n", type=int, default=784)
    args = ap.parse_args()
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    b, n = args.batch, args.n
    x0 = torch.rand(b, n, generator=gen) * 0.5
    w = (torch.randn(n, n, generator=gen) * 0.02).to(torch.bfloat16)
    p = torch.tensor(1.01)
    q, clip = 0.04, 5.0
    bufs = [
        torch.empty(b, n),
        torch.empty(b, n, dtype=torch.bfloat16),
        torch.empty(b, n, dtype=torch.bfloat16),
        torch.empty(b, n),
    ]

    t0 = time.perf_counter()
    cpre = torch.compile(pre, dynamic=False)
    cpost = torch.compile(post, dynamic=False)
    compiled_loop(cpre, cpost, x0.clone(), w, p, q, clip, 2)
    compile_s = time.perf_counter() - t0

    # one step each: after hundreds of steps rounding differences grow along the unstable
    # directions of a random coupling, so only a single step compares the two kernels
    ref = eager_loop(x0.clone(), w, p, q, clip, 1, *bufs).clone()
    got = compiled_loop(cpre, cpost, x0.clone(), w, p, q, clip, 1)
    eager_t, comp_t, ratio = [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        eager_loop(x0.clone(), w, p, q, clip, args.steps, *bufs)
        eager_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compiled_loop(cpre, cpost, x0.clone(), w, p, q, clip, args.steps)
        comp_t.append(time.perf_counter() - t0)
        ratio.append(eager_t[-1] / comp_t[-1])
    row = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "batch": b,
        "n": n,
        "steps": args.steps,
        "rounds": args.rounds,
        "compile_s": compile_s,
        "eager_forward_s": statistics.median(eager_t),
        "compiled_forward_s": statistics.median(comp_t),
        "compiled_speedup": statistics.median(ratio),
        "one_step_max_abs_difference": float((ref - got).abs().max()),
    }
    print(json.dumps(row, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps([row], indent=2))  # a list of rows, as the report reads


if __name__ == "__main__":
    main()
