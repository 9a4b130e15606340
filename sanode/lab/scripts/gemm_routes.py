"""The loops' matrix products through torch.mm and through oneDNN (``sanode.core.gemm``), in one
run.

Times, interleaved in rounds, each product shape of a training or evaluation pass at N = 784
in float32 and bfloat16, once through ``torch.mm`` and once through the oneDNN route the loops
take where :func:`sanode.core.gemm.gemm_route` picks it (asked for here by name):

* ``step``: (200, 784) @ (784, 784), a training step's forward and dL/dx products (oneDNN:
  the fixed operand packed once, outside the timing, as a pass does once);
* ``eval``: (2000, 784) @ (784, 784), an evaluation batch;
* ``grad_w``: (784, 6400) @ (6400, 784), the weight-gradient GEMM over a chunk of 32 steps;
* ``coupling``: (784, 784)^T @ (784, 774), the N^3 product of A's backward pass.

Each row: medians over rounds (microseconds), the speed-up of oneDNN's route over torch.mm and
both routes' relative errors against float64. Run as a script:

    python sanode/lab/scripts/gemm_routes.py results/bench/gemm-routes.json [--rounds 9]
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

from sanode.core import gemm
from sanode.files import write_json
from sanode.training.memory import keep_freed_memory

SHAPES = {
    "step": (200, 784, 784),
    "eval": (2000, 784, 784),
    "grad_w": (784, 6400, 784),
    "coupling": (784, 784, 774),
}


def _time(fn, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def cases(dtype: torch.dtype) -> dict:
    """name -> {route: a closure of the product}, and the float64 references' errors."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, (m, k, n) in SHAPES.items():
        if name in ("step", "eval"):
            x = torch.randn(m, k, generator=gen).to(dtype)
            w = torch.randn(k, n, generator=gen).to(dtype)
            packed = gemm.Weight(w, m, "onednn")
            fns = {"torch": lambda x=x, w=w: torch.mm(x, w), "onednn": lambda x=x, p=packed: p(x)}
        else:  # transposed operands as the loops pass them
            a = torch.randn(k, m, generator=gen).to(dtype).t()
            b = torch.randn(k, n, generator=gen).to(dtype)
            if name == "coupling":
                b = torch.randn(k, k, generator=gen).to(dtype)[:, :n]  # a column slice of M

            # oneDNN's kernel itself: gemm.matmul keeps bfloat16 one-offs on torch.mm
            def onednn(a=a, b=b):  # as gemm.addmm_ runs it (a slice copied each call)
                return gemm._linear(gemm._dense(a), gemm._dense(b).t())

            fns = {"torch": lambda a=a, b=b: torch.mm(a, b), "onednn": onednn}
            x, w = a, b
        ref = x.double() @ w.double()
        errors = {r: float((fn().double() - ref).norm() / ref.norm()) for r, fn in fns.items()}
        out[name] = (fns, errors)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()  # as training does
    torch.set_num_threads(args.threads)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        table = cases(dtype)
        for name, (fns, errors) in table.items():
            reps = max(2, int(0.05 / max(_time(fns["torch"], 2), 1e-6)))
            times: dict[str, list[float]] = {r: [] for r in fns}
            for _ in range(args.rounds):
                for route, fn in fns.items():
                    times[route].append(_time(fn, reps))
            speedups = [t / o for t, o in zip(times["torch"], times["onednn"], strict=True)]
            m, k, n = SHAPES[name]
            rows.append(
                {
                    "dtype": str(dtype)[6:],
                    "product": name,
                    "shape": f"({m}, {k}) @ ({k}, {n})",
                    "torch_us": 1e6 * statistics.median(times["torch"]),
                    "onednn_us": 1e6 * statistics.median(times["onednn"]),
                    "speedup": statistics.median(speedups),
                    "speedup_min": min(speedups),
                    "speedup_max": max(speedups),
                    "torch_rel_error": errors["torch"],
                    "onednn_rel_error": errors["onednn"],
                }
            )
            r = rows[-1]
            print(
                f"{r['dtype']:>9} {name:>9}: torch.mm {r['torch_us']:9.0f} us, oneDNN "
                f"{r['onednn_us']:9.0f} us ({r['speedup']:.2f}x), errors "
                f"{r['torch_rel_error']:.1e} / {r['onednn_rel_error']:.1e}"
            )
    write_json(
        args.out,
        {
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "threads": args.threads,
            "rounds": args.rounds,
            "mkl_on_amd": gemm._mkl_on_amd(),
            "rows": rows,
        },
        what="GEMM routes",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
