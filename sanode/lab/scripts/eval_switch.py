"""Which rounding moves items when only evaluation switches to bfloat16 products?

Evaluates one trained model on every test image of a prepared data cache with each product
mode and with each rounding alone (A only, the state only), and counts the items that change
bucket and the final pixel signs that flip against the float32 early-exit evaluation at
``--tol``; the float32 fixed horizon and a ten times looser early exit show what stopping
at convergence itself changes.

    python sanode/lab/scripts/eval_switch.py RUN/model.pt RUN/data.pt OUT.json

(RUN: a ``sanode time-to-accuracy`` folder; results/bench/eval-switch-mnist.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from sanode.core import metrics
from sanode.core.converge import integrate_until_converged
from sanode.core.integrate import Dynamics, integrate, num_steps
from sanode.core.products import Products
from sanode.data.prepare import load_prepared
from sanode.files import write_json
from sanode.training.checkpoint import load_model


class StateRounded(Dynamics):
    """float32 A, the state rounded to bfloat16 before each product."""

    def field(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.c1 - self.c2 * x * x) + x.to(torch.bfloat16).float() @ self.linear_t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("data", help="a prepared data cache (sanode.prepare)")
    p.add_argument("out", help="JSON rows")
    p.add_argument("--t-end", type=float, default=120.0)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model, _, _ = load_model(args.checkpoint)
    x, y = load_prepared(args.data).split("test")
    f32 = model.dynamics(torch.float32, products=Products("float32"))
    bf = model.dynamics(torch.float32, products=Products("bfloat16"))
    bf2 = model.dynamics(torch.float32, products=Products("bfloat16x2"))
    a_rounded = dataclasses.replace(f32, linear_t=f32.linear_t.to(torch.bfloat16).float())
    loose = args.tol * 10
    modes = {  # name: (dynamics, finish: None | "fixed" | Dynamics, loop dtype[, tol])
        "float32 (early exit)": (f32, None, torch.float32),
        "float32, fixed horizon": (f32, "fixed", torch.float32),
        f"float32 (early exit, tol {loose:g})": (f32, None, torch.float32, loose),
        "float64 (early exit)": (
            model.dynamics(torch.float64, products=Products("float64")),
            None,
            torch.float64,
        ),
        "bfloat16 products, fixed horizon": (bf, "fixed", torch.float32),
        "bfloat16 products, float32 finish": (bf, f32, torch.float32),
        "bfloat16x2 products (A split in two), fixed horizon": (bf2, "fixed", torch.float32),
        "bfloat16x2 products (A split in two), float32 finish": (bf2, f32, torch.float32),
        "A rounded to bfloat16, float32 products": (a_rounded, None, torch.float32),
        "state rounded to bfloat16, float32 A": (
            StateRounded(f32.linear_t, f32.c1, f32.c2, f32.clip),
            None,
            torch.float32,
        ),
    }
    n = num_steps(args.t_end, args.dt)
    ref, rows = None, []
    for name, (dyn, finish, dtype, *tol) in modes.items():
        tol = tol[0] if tol else args.tol
        t0 = time.perf_counter()
        outs, steps = [], []
        for s in range(0, len(x), 2000):
            b = x[s : s + 2000].to(dtype)
            if finish == "fixed":
                o, st = integrate(dyn, b, args.t_end, args.dt), torch.full((len(b),), n)
            else:
                o, st = integrate_until_converged(
                    dyn, b, args.t_end, args.dt, tol=tol, finish=finish
                )
            outs.append(o.float())
            steps.append(st)
        seconds = time.perf_counter() - t0
        states, done = torch.cat(outs), torch.cat(steps)
        overlap = metrics.sign_overlap(states, model.patterns.float(), y)
        bucket = metrics.bucket_of(overlap, 0.95)
        if ref is None:
            ref = (states, bucket)
        flips = (torch.sign(states) != torch.sign(ref[0])).sum(1)
        row = {
            "mode": name,
            "seconds": round(seconds, 1),
            "work_fraction": round(float(done.sum()) / (n * len(done)), 3),
            "H": metrics.accuracy(overlap, 0.95),
            "at_horizon": int((done == n).sum()),
            "items_changing_bucket": int((bucket != ref[1]).sum()),
            "items_with_sign_flips": int((flips > 0).sum()),
            "sign_flips": int(flips.sum()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_json(args.out, rows)


if __name__ == "__main__":
    main()
