"""Training-step throughput, measured beside its references in the same run.

Variants of one training step (forward + backward + Adam) at the same sizes:

* ``sanode``   - this package: A built once per pass (float64), lean Euler backward pass.
* ``autograd`` - A built once per pass, the Euler loop under plain autograd.
* ``naive``    - the authors' scheme: A = Phi diag(lambda) inv(Phi) rebuilt at every step.

The roofline is the matmul throughput measured in the same run and dtype: a training step
costs three (B, N) @ (N, N) products per Euler step, 3 * 2*B*N^2 flops, so the best possible
rate is ``matmul_flops_per_s / (6 N^2)`` image-steps per second.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from .config import torch_dtype
from .integrate import Dynamics, get_solver
from .model import SANode
from .patterns import block_patterns


def matmul_flops(n: int, batch: int, dtype: torch.dtype, *, seconds: float = 1.0) -> float:
    """Measured flop/s of (batch, n) @ (n, n) in ``dtype`` (median of timed blocks)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(batch, n, generator=gen, dtype=dtype)
    w = torch.randn(n, n, generator=gen, dtype=dtype)
    out = torch.empty(batch, n, dtype=dtype)
    for _ in range(5):
        torch.mm(a, w, out=out)
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        t0 = time.perf_counter()
        for _ in range(20):
            torch.mm(a, w, out=out)
        rates.append(20 * 2 * batch * n * n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _naive_forward(model: SANode, x: torch.Tensor, n_steps: int, dt: float) -> torch.Tensor:
    """The authors' loop: the coupling (with an explicit inverse) is rebuilt inside every step."""
    solver = get_solver("euler")
    for _ in range(n_steps):
        phi = model.basis()
        a_mat = phi @ torch.diag(model.eigenvalues()) @ torch.linalg.inv(phi)
        g = model.gamma.abs()
        dyn = Dynamics(
            (model.beta * a_mat).T.to(x.dtype),
            (4 * model.a**2 * g).to(x.dtype),
            (4 * g).to(x.dtype),
            model.clip * model.a,
        )
        x = solver.step(dyn, x, dt).clamp(-dyn.clip, dyn.clip)
    return x


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``fn()`` (unique storages)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def time_training_step(
    variant: str,
    *,
    n: int,
    k: int,
    batch: int,
    steps: int,
    dtype: torch.dtype,
    repeats: int,
    dt: float = 0.1,
) -> dict:
    """Median seconds of one training step of ``variant``; also the autograd-saved bytes."""
    patterns = block_patterns(n, k, 0.5)
    model = SANode(patterns, dtype=dtype, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(batch, n, generator=gen, dtype=dtype)
    target = patterns[torch.randint(0, k, (batch,), generator=gen)].to(dtype)
    t_end = steps * dt

    def forward():
        if variant == "sanode":
            return model(x0, t_end, dt)
        if variant == "autograd":
            return model.integrate(x0, t_end, dt)
        if variant == "naive":
            return _naive_forward(model, x0, steps, dt)
        raise ValueError(f"unknown variant {variant!r}")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(), target)
        loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {
        "variant": variant,
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps,
        "batch": batch,
        "n": n,
        "seconds": seconds,
        "image_steps_per_s": batch * steps / seconds,
        "saved_mib": _saved_bytes(forward) / 2**20,
    }


def run_benchmark(
    *,
    n: int = 784,
    k: int = 10,
    batch: int = 200,
    steps: tuple[int, ...] = (55, 600),
    dtypes: tuple[str, ...] = ("float32", "float64"),
    naive: bool = True,
    repeats: int = 3,
    threads: int | None = None,
    out: str | None = None,
    naive_steps: int = 55,
) -> list[dict]:
    """Print (and return) the throughput table; every ratio is measured in this same run."""
    if threads:
        torch.set_num_threads(threads)
    rows = []
    print(f"sanode bench: N={n}, K={k}, batch={batch}, threads={torch.get_num_threads()}")
    for name in dtypes:
        dtype = torch_dtype(name)
        jobs = [("naive", naive_steps)] if naive else []
        jobs += [(variant, s) for s in steps for variant in ("autograd", "sanode")]
        naive_rate = naive_fraction = None
        for variant, s in jobs:
            # the roofline is measured right before each timing: shared machines drift
            flops = matmul_flops(n, batch, dtype)
            r = time_training_step(
                variant,
                n=n,
                k=k,
                batch=batch,
                steps=s,
                dtype=dtype,
                repeats=max(1, repeats - 1) if variant == "naive" else repeats,
            )
            r["matmul_gflops"] = flops / 1e9
            r["roofline_fraction"] = r["image_steps_per_s"] / (flops / (6 * n * n))
            if variant == "naive":
                naive_rate, naive_fraction = r["image_steps_per_s"], r["roofline_fraction"]
            r["vs_naive"] = r["image_steps_per_s"] / naive_rate if naive_rate else None
            # the same ratio with each row divided by the matmul speed measured just before it:
            # robust to a machine whose speed drifts between the rows
            r["vs_naive_normalised"] = (r["roofline_fraction"] / naive_fraction
                                        if naive_rate else None)  # fmt: skip
            rows.append(r)
    header = (
        f"{'variant':>9} {'dtype':>8} {'steps':>6} {'img*steps/s':>12} {'roofline':>9} "
        f"{'x naive':>8} {'x naive*':>9} {'saved MiB':>10} {'matmul GF/s':>12}"
    )
    print(header)
    for r in rows:
        vs = f"{r['vs_naive']:.1f}" if r.get("vs_naive") else "-"
        vsn = f"{r['vs_naive_normalised']:.1f}" if r.get("vs_naive_normalised") else "-"
        print(
            f"{r['variant']:>9} {r['dtype']:>8} {r['steps']:>6} {r['image_steps_per_s']:>12,.0f} "
            f"{r['roofline_fraction']:>9.1%} {vs:>8} {vsn:>9} {r['saved_mib']:>10.1f} "
            f"{r['matmul_gflops']:>12.1f}"
        )
    print("x naive* = the ratio of roofline fractions: each row against the matmul speed "
          "measured right before it")  # fmt: skip
    print(
        "roofline = measured matmul flop/s / (6 N^2) image-steps/s (3 GEMMs per training step);"
        f" naive measured at {naive_steps} steps (its cost per step does not depend on T)"
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rows, indent=2))
    return rows
