"""Where a training step's time goes, float32 against bfloat16, in one run.

The issue's step target asks the bfloat16 step for 0.8 of the products' own speed-up. This
times, interleaved in rounds, each dtype's whole training step (``sanode bench``'s paired
steps: float32 with A built in float64, bfloat16 products with A in float32) and its parts:

* ``products`` - the step's matrix products alone, in its product dtype and through the loop's
  routes (``sanode.core.gemm``, the two fixed operands packed once): 2 S products
  (B, N) @ (N, N) (the forward step and the backward's dL/dx) and the weight-gradient GEMMs
  (N, c B) @ (c B, N) over chunks of c = 32 steps;
* ``coupling`` - A built and its backward pass taken (a fixed dL/dA), in the step's
  ``coupling_dtype`` through the solves the step uses;
* ``optimizer`` - the Adam step on the model's gradients;
* ``other`` - the step minus those three: the Euler loop's elementwise passes (casts, the
  cubic term, the clamp, the dL/dp and dL/dq sums), the loss, the glue.

From the medians: the matmul ratio (``sanode bench --paired``'s (B, N) @ (N, N) blocks as the
loops run them), the step ratio, the
step the target needs (float32 step / (0.8 x matmul ratio)), and how far that is under the
bfloat16 step's products and coupling. Run as a script (``sanode`` is imported first, so its
thread settings hold):

    python sanode/lab/scripts/step_parts.py results/bench/step-parts.json \
        [--steps 55 600] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

# isort: off
import sanode  # noqa: F401  (before torch: its thread settings, sanode.core.lapack_env)

# isort: on
import torch
from bf16_capability import cpu_model  # this folder's script (on sys.path when run)

from sanode.core.coupling import lapack_route
from sanode.core.gemm import Weight, gemm_route, matmul
from sanode.files import write_json
from sanode.lab.bench import training_problem
from sanode.lab.bench_paired import STEPS, _mm_seconds
from sanode.training.memory import keep_freed_memory

CHUNK = 32  # the backward pass's weight-gradient chunk (sanode.core.euler_grad)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _parts(
    label: str, variant: str, dtype: torch.dtype, steps: int, n: int, k: int, b: int
) -> dict:
    """Closures for one dtype's step and its parts (the model the step trains)."""
    problem = training_problem(
        variant, n=n, k=k, batch=b, steps=steps, dtype=dtype, device=torch.device("cpu")
    )
    model, step = problem.model, problem.step
    step()
    grad_a = torch.randn(n, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grad_a = grad_a.to(model.coupling_dtype)

    def coupling() -> None:
        model.coupling(model.coupling_dtype).backward(grad_a)

    mm = torch.bfloat16 if label != "float32" else torch.float32
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(b, n, generator=gen).to(mm)
    w = torch.randn(n, n, generator=gen).to(mm)
    out = torch.empty(b, n, dtype=mm)
    rows = [min(CHUNK, steps - lo) for lo in range(0, steps, CHUNK)]
    xs = torch.randn(CHUNK * b, n, generator=gen).to(mm)

    def products() -> None:  # the loop's routes (sanode.core.euler_grad)
        forward, backward = Weight(w, b), Weight(w.t().contiguous(), b)
        for _ in range(steps):
            forward(x, out=out)
            backward(x, out=out)
        for r in rows:
            part = xs[: r * b]
            matmul(part.t(), part)  # as the loop: oneDNN for float32 where routed, else mm

    return {
        "step": step,
        "products": products,
        "coupling": coupling,
        "optimizer": problem.optimizer.step,
    }


def measure(steps: int, rounds: int, n: int = 784, k: int = 10, batch: int = 200) -> dict:
    """One row: each dtype's step and parts (medians over ``rounds`` interleaved rounds, ms),
    the matmul and step ratios, the bfloat16 step the 0.8 target needs and what it leaves
    for ``other``."""
    runs = {
        label: _parts(label, variant, getattr(torch, dtype), steps, n, k, batch)
        for label, variant, dtype in STEPS
        if label != "fused"
    }
    for parts in runs.values():
        for fn in parts.values():
            fn()  # warm
    gen = torch.Generator().manual_seed(0)
    mats = {}
    for name in ("float32", "bfloat16"):
        dt = getattr(torch, name)
        a = torch.randn(batch, n, generator=gen).to(dt)
        mats[name] = (
            a,
            Weight(torch.randn(n, n, generator=gen).to(dt), batch),
            torch.empty_like(a),
        )
    seconds = {(lab, part): [] for lab, parts in runs.items() for part in parts}
    mm_ratio = []
    for _ in range(rounds):
        for lab, parts in runs.items():
            for part, fn in parts.items():
                seconds[lab, part].append(_timed(fn))
        mm_ratio.append(_mm_seconds(*mats["float32"], 40) / _mm_seconds(*mats["bfloat16"], 40))
    med = {key: statistics.median(v) for key, v in seconds.items()}
    row: dict = {
        "steps": steps,
        "rounds": rounds,
        "matmul_ratio": statistics.median(mm_ratio),
        "lapack": lapack_route(torch.device("cpu"), torch.float32),
        "gemm": gemm_route(torch.device("cpu"), torch.float32, n * n),
    }
    for lab in runs:
        parts = {part: med[lab, part] for part in runs[lab]}
        parts["other"] = parts["step"] - parts["products"] - parts["coupling"] - parts["optimizer"]
        row.update({f"{lab}_{part}_ms": 1e3 * s for part, s in parts.items()})
    ratios = [
        f / b for f, b in zip(seconds["float32", "step"], seconds["bfloat16", "step"], strict=True)
    ]
    row["step_ratio"] = statistics.median(ratios)
    row["of_matmul_ratio"] = statistics.median(
        [r / m for r, m in zip(ratios, mm_ratio, strict=True)]
    )
    target = row["float32_step_ms"] / (0.8 * row["matmul_ratio"])
    row["target_bfloat16_step_ms"] = target
    # what the target leaves for everything besides the products and A's build
    row["target_other_ms"] = target - sum(
        row[f"bfloat16_{p}_ms"] for p in ("products", "coupling", "optimizer")
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--steps", type=int, nargs="+", default=[55, 600])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()  # as training does
    torch.set_num_threads(args.threads)
    rows = []
    for steps in args.steps:
        rows.append(measure(steps, args.rounds))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()})
    write_json(
        args.out,
        {"cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads, "rows": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
