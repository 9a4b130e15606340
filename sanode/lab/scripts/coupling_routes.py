"""Routes to the coupling matrix A = Phi diag(lambda) Phi^-1 and its backward pass, in one run.

One training step builds A once and takes its backward pass once; at 55 Euler steps that is
a fifth of a bfloat16 step on a 2-core EPYC. This times, interleaved in rounds, the forward
build plus its backward pass (a fixed dL/dA) at N = 784, K = 10, 2 threads:

* ``solve-float64`` - the build before ``sanode.core.coupling`` (what a float32 run trained
  with, ``coupling_dtype: float64``): a float64 ``torch.linalg.solve`` and autograd's backward
  (one more solve with the factors, one GEMM).
* ``solve-float32`` - the same in float32 plus the kernel projection (``coupling_dtype:
  float32`` before ``sanode.core.coupling``).
* ``lu-torch-float64`` / ``lu-torch-float32`` - ``sanode.core.coupling`` (one LU of Phi,
  the solves and the backward written out) with torch's ``lu_solve``.
* ``lu-openblas-float64`` / ``lu-openblas-float32`` - the same with scipy's OpenBLAS
  ``getrs`` for the two solves (what ``auto`` picks on the CPU where the thread settings of
  ``sanode.core.lapack_env`` hold).
* ``inverse-float32`` - an explicit inverse P = Phi^-1 (LU and getri), A = (Phi diag lambda) P,
  and a hand-written backward that uses P instead of a solve: M = G P^T,
  dL/dPhi = M diag(lambda) - A^T M, dL/dlambda = diag(Phi^T M).
* ``inverse-bf16-backward`` - the same with the backward's two N^3 GEMMs in bfloat16 (the
  loop's own dL/dA comes from bfloat16 products already).

Each row: the median milliseconds over rounds, A's and the gradients' relative errors against
the float64 solve. Medians over rounds; each round times every route back to back. Run it as
a script (``sanode`` is imported first, so its thread settings hold).

    python sanode/lab/scripts/coupling_routes.py results/bench/coupling-routes.json [--rounds 15]
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

from sanode import block_patterns
from sanode.core.model import SANode
from sanode.files import write_json
from sanode.training.memory import keep_freed_memory


class _Inverse(torch.autograd.Function):
    """A = (Phi diag lambda) Phi^-1 through an explicit inverse; ``low`` runs the backward's
    GEMMs in bfloat16."""

    @staticmethod
    def forward(ctx, phi, lam, low):
        inv = torch.linalg.inv(phi)
        a = (phi * lam) @ inv
        ctx.save_for_backward(phi, lam, inv, a)
        ctx.low = low
        return a

    @staticmethod
    def backward(ctx, grad):
        phi, lam, inv, a = ctx.saved_tensors
        if ctx.low:
            m = (grad.bfloat16() @ inv.T.bfloat16()).float()
            at_m = (a.T.bfloat16() @ m.bfloat16()).float()
        else:
            m = grad @ inv.T
            at_m = a.T @ m
        return m * lam - at_m, (phi * m).sum(0), None


def routes(model: SANode) -> dict:
    def inverse(low: bool):
        def build():
            phi, lam = model.basis().float(), model.eigenvalues().float()
            a = _Inverse.apply(phi, lam, low)
            fixed = model.basis_fixed.float()
            return a - (a @ fixed) @ fixed.T

        return build

    def solve(dtype):
        def build():
            phi = model.basis().to(dtype)
            a = torch.linalg.solve(phi, phi * model.eigenvalues().to(dtype), left=False)
            if dtype != torch.float64:
                fixed = model.basis_fixed.to(dtype)
                a = a - (a @ fixed) @ fixed.T
            return a

        return build

    def lu(route, dtype):
        def build():
            model.lapack = route  # the solves' route travels with the model
            return model.coupling(dtype)

        return build

    table = {"solve-float64": solve(torch.float64), "solve-float32": solve(torch.float32)}
    for route in ("torch", "openblas"):
        for dtype in (torch.float64, torch.float32):
            table[f"lu-{route}-{str(dtype)[6:]}"] = lu(route, dtype)
    table["inverse-float32"] = inverse(False)
    table["inverse-bf16-backward"] = inverse(True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as training does
    model = SANode(block_patterns(784, 10), seed=0)
    grad = torch.randn(784, 784, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = (model.basis_free, model.eig_free)

    def step(build):
        model.zero_grad()
        a = build()
        (a * grad.to(a.dtype)).sum().backward()
        return a.detach().double(), [p.grad.clone() for p in params]

    table = routes(model)
    ref_a, ref_grads = step(table["solve-float64"])
    rows = {}
    for name, build in table.items():
        a, grads = step(build)
        rows[name] = {
            "route": name,
            "a_rel_error": ((a - ref_a).norm() / ref_a.norm()).item(),
            "basis_grad_rel_error": ((grads[0] - ref_grads[0]).norm() / ref_grads[0].norm()).item(),
            "eig_grad_rel_error": ((grads[1] - ref_grads[1]).norm() / ref_grads[1].norm()).item(),
            "ms": [],
        }
    for _ in range(args.rounds):
        for name, build in table.items():
            t0 = time.perf_counter()
            step(build)
            rows[name]["ms"].append(1e3 * (time.perf_counter() - t0))
    base = statistics.median(rows["solve-float32"]["ms"])
    out = []
    for row in rows.values():
        ms = row.pop("ms")
        row.update(
            ms=statistics.median(ms),
            ms_min=min(ms),
            ms_max=max(ms),
            of_solve_float32=statistics.median(ms) / base,
        )
        out.append(row)
        print(
            f"{row['route']:>22}: {row['ms']:7.2f} ms ({row['of_solve_float32']:.2f}x "
            f"solve-float32), A err {row['a_rel_error']:.1e}, grad err "
            f"{row['basis_grad_rel_error']:.1e} / {row['eig_grad_rel_error']:.1e}"
        )
    write_json(
        args.out,
        {"cpu": cpu_model(), "threads": args.threads, "rounds": args.rounds, "rows": out},
        what="coupling routes",
    )


if __name__ == "__main__":
    main()
