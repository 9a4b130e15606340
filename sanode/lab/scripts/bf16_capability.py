"""Does this machine multiply bfloat16 natively? What ``train_products: auto`` chooses here.

Times the product of every Euler step, a (batch, N) state by the (N, N) coupling, in float32
and in bfloat16 (median of ``--repeats`` after a warm-up, ``--threads`` threads), and writes
what oneDNN reports (:func:`sanode.core.products.native_bfloat16`), torch's CPU capability
and what ``auto`` resolves to, beside the measured ratio.

    python sanode/lab/scripts/bf16_capability.py results/bench/bf16-capability-<machine>.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sanode.core.calibration import cpu_model
from sanode.core.products import native_bfloat16, resolve
from sanode.files import write_json


def product_seconds(dtype: torch.dtype, batch: int, n: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, n, generator=gen).to(dtype)
    a = torch.rand(n, n, generator=gen).to(dtype)
    out = torch.empty(batch, n, dtype=dtype)
    for _ in range(3):
        torch.mm(x, a, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(x, a, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--nodes", type=int, default=784)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    f32 = product_seconds(torch.float32, args.batch, args.nodes, args.repeats)
    bf16 = product_seconds(torch.bfloat16, args.batch, args.nodes, args.repeats)
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        pass
    result = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})),
        "torch": torch.__version__,
        "threads": args.threads,
        "shape": f"({args.batch}, {args.nodes}) @ ({args.nodes}, {args.nodes})",
        "float32_ms": f32 * 1e3,
        "bfloat16_ms": bf16 * 1e3,
        "bfloat16_speedup": f32 / bf16,
        "native_bfloat16": native_bfloat16(),
        "auto_resolves_to": resolve("auto", "float32"),
    }
    write_json(args.out, [result], what="result", indent=1)  # a list of rows: sanode report
    for key, value in result.items():
        print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
