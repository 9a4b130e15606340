"""Throughput, roofline fraction and peak memory, each measured beside its reference in one run.

Training (one step: forward + backward + Adam) at the same sizes:

* ``sanode``     - this package: A built once per pass (float64), lean Euler backward pass.
* ``sanode-seg`` - the same with gradient checkpointing (``grad_segment="auto"``, sqrt(T) segments).
* ``autograd``   - A built once per pass, the Euler loop under plain autograd.
* ``naive``      - the authors' scheme: A = Phi diag(lambda) inv(Phi) rebuilt at every step.
* ``sanode-a32`` - (bfloat16 rows) ``sanode`` with A and its backward pass built in float32
  (the ``coupling_dtype`` setting) instead of float64.
* ``sanode-fused`` - (bfloat16 rows) ``sanode-a32`` with each Euler step's elementwise work as
  one compiled kernel (the ``fuse_steps`` setting, :mod:`sanode.core.fused`).

Every variant runs in float32, float64 or ``bfloat16`` (a float32 loop with bfloat16 matrix
products, the ``train_products`` setting; no naive row).

Evaluation (no gradient) of a batch to the horizon T:

* ``eval``       - fixed-step Euler to T.
* ``eval-early`` - the same with items leaving the batch once converged (``tol``); its
  throughput counts the image-steps of the fixed-step run it replaces.

With bfloat16, the evaluation rows also run as ``bfloat16x2`` (the ``eval_products``
setting): two bfloat16 products per step, A split into a high and a low part.

The roofline is the matmul throughput measured in the same run, dtype and device, right before
each row (shared machines drift): a training step costs three (B, N) @ (N, N) products per Euler
step (6 N^2 flops per image-step), ``sanode-seg`` four, an evaluation step one (2 N^2).
Peak memory is measured in a fresh process per row (CPU: peak RSS above the RSS after set-up,
the peak reset through /proc/self/clear_refs; CUDA: ``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..core.converge import integrate_until_converged
from ..core.gemm import Weight
from ..core.integrate import Dynamics, get_solver, integrate
from ..core.model import SANode
from ..core.patterns import block_patterns
from ..core.products import Products, dtype_name
from ..training.memory import track_live_memory
from ..training.train import adam

TRAIN_VARIANTS = ("naive", "autograd", "sanode", "sanode-seg", "sanode-a32", "sanode-fused")
BENCH_DTYPES = ("float32", "float64", "bfloat16")


def loop_dtypes(dtype: torch.dtype) -> tuple[torch.dtype, Products]:
    """(loop dtype, products) of a bench row: ``bfloat16`` rows run a float32 loop whose
    matrix products are bfloat16 (``train_products``); other rows run everything in ``dtype``."""
    if dtype == torch.bfloat16:
        return torch.float32, Products("bfloat16")
    return dtype, Products(dtype_name(dtype))


GEMMS_PER_STEP = {
    "naive": 3,
    "autograd": 3,
    "sanode": 3,
    "sanode-seg": 4,
    "sanode-a32": 3,
    "sanode-fused": 3,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, repeats: int, device: torch.device):
    """(median wall seconds of ``repeats`` calls of ``fn``, the last call's result)."""
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _row(kind, variant, dtype, steps, batch, n, seconds) -> dict:
    return {
        "kind": kind,
        "variant": variant,
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps,
        "batch": batch,
        "n": n,
        "seconds": seconds,
        "image_steps_per_s": batch * steps / seconds,
    }


def matmul_flops(
    n: int,
    batch: int,
    dtype: torch.dtype,
    *,
    device="cpu",
    seconds: float = 1.0,
    gemm: str = "auto",
) -> float:
    """Measured flop/s of (batch, n) @ (n, n) in ``dtype`` (median of timed blocks), the
    product as the integration loops run it (:class:`sanode.core.gemm.Weight`: oneDNN with the
    (n, n) operand packed once where that route is taken, else ``torch.mm``)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(batch, n, generator=gen, dtype=dtype).to(device)
    w = Weight(torch.randn(n, n, generator=gen, dtype=dtype).to(device), batch, gemm)
    out = torch.empty(batch, n, dtype=dtype, device=device)
    for _ in range(5):
        w(a, out=out)
    _sync(device)
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        t0 = time.perf_counter()
        for _ in range(20):
            w(a, out=out)
        _sync(device)
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
            None if model.clip is None else model.clip * model.a,
        )
        x = solver.step(dyn, x, dt)
        if dyn.clip is not None:
            x = x.clamp(-dyn.clip, dyn.clip)
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


class TrainingProblem(NamedTuple):
    """One training step of a bench variant on a fixed random problem: the model, its
    optimiser and the ``step`` (forward, loss, backward, optimiser step) and ``forward``
    closures."""

    model: SANode
    optimizer: torch.optim.Optimizer
    step: Callable[[], None]
    forward: Callable[[], torch.Tensor]


def _training_setup(variant: str, **kwargs):
    """(step, forward) closures of :func:`training_problem`."""
    problem = training_problem(variant, **kwargs)
    return problem.step, problem.forward


def training_problem(
    variant: str,
    *,
    n: int,
    k: int,
    batch: int,
    steps: int,
    dtype: torch.dtype,
    device: torch.device,
    dt: float = 0.1,
    gemm: str = "auto",
    lapack: str = "auto",
) -> TrainingProblem:
    """One training step of ``variant`` (:data:`TRAIN_VARIANTS`) at N = ``n``, K = ``k``,
    ``batch`` states, ``steps`` Euler steps, ``dtype`` (bfloat16: a float32 loop with bfloat16
    products), on a fixed random problem (seeded); ``gemm`` / ``lapack``: the products' and
    the solves' routes (:mod:`sanode.core.gemm`, :mod:`sanode.core.coupling`)."""
    if variant not in TRAIN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(TRAIN_VARIANTS)}")
    if variant == "naive" and dtype == torch.bfloat16:
        raise ValueError("the naive variant has no bfloat16 form; time it in float32")
    patterns = block_patterns(n, k, 0.5)
    dtype, mm = loop_dtypes(dtype)
    coupling = torch.float32 if variant in ("sanode-a32", "sanode-fused") else torch.float64
    model = SANode(
        patterns,
        dtype=dtype,
        products=Products(mm.name, gemm),
        coupling_dtype=coupling,
        lapack=lapack,
        seed=0,
    ).to(device)
    opt = adam(model.parameters(), lr=1e-3)  # what training runs
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(batch, n, generator=gen, dtype=dtype).to(device)
    target = patterns[torch.randint(0, k, (batch,), generator=gen)].to(device, dtype)
    t_end = steps * dt

    def forward():
        if variant in ("sanode", "sanode-a32"):
            return model(x0, t_end, dt)
        if variant == "sanode-fused":
            return model(x0, t_end, dt, fuse_steps=True)
        if variant == "sanode-seg":
            return model(x0, t_end, dt, grad_segment="auto")
        if variant == "autograd":
            return model.integrate(x0, t_end, dt)
        return _naive_forward(model, x0, steps, dt)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(), target)
        loss.backward()
        opt.step()

    return TrainingProblem(model, opt, step, forward)


def time_training_step(
    variant: str,
    *,
    n: int,
    k: int,
    batch: int,
    steps: int,
    dtype: torch.dtype,
    repeats: int,
    device="cpu",
    dt: float = 0.1,
    gemm: str = "auto",
    lapack: str = "auto",
) -> dict:
    """Median seconds of one training step of ``variant``; also the autograd-saved bytes."""
    device = torch.device(device)
    step, forward = _training_setup(
        variant,
        n=n,
        k=k,
        batch=batch,
        steps=steps,
        dtype=dtype,
        device=device,
        dt=dt,
        gemm=gemm,
        lapack=lapack,
    )
    step()  # warm-up
    seconds, _ = median_seconds(step, repeats, device)
    row = _row("train", variant, dtype, steps, batch, n, seconds)
    return {**row, "saved_mib": _saved_bytes(forward) / 2**20}


def _peak_child(conn, variant, kwargs) -> None:
    track_live_memory()  # resident memory follows the live tensors
    device = torch.device(kwargs["device"])
    torch.set_num_threads(kwargs.pop("threads"))
    step, _ = _training_setup(variant, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        conn.send((torch.cuda.max_memory_allocated(device) - base) / 2**20)
    else:
        base = _reset_peak_rss()
        step()
        conn.send((_proc_status_kib("VmHWM") - base) / 1024)
    conn.close()


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}; the CPU memory probe needs Linux")


def _reset_peak_rss() -> int:
    """Reset the process's peak RSS (VmHWM) to its current RSS; returns that RSS in KiB.

    Without the reset the peak would include whatever import or set-up once touched.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status_kib("VmRSS")


def peak_training_mib(variant: str, *, repeats: int = 3, **kwargs) -> float:
    """Peak memory (MiB) of one training step above the set-up, measured in a fresh process;
    the least of ``repeats`` processes (allocator and page noise only ever adds: one process
    measured 23-27 MiB for the same step here)."""
    kwargs.setdefault("threads", torch.get_num_threads())
    return min(_peak_once(variant, kwargs) for _ in range(max(1, repeats)))


def _peak_once(variant: str, kwargs: dict) -> float:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_peak_child, args=(child, variant, dict(kwargs)))
    proc.start()
    child.close()
    try:
        value = parent.recv()
    except EOFError:
        value = None
    proc.join()
    if value is None:
        raise RuntimeError(f"the memory probe of {variant!r} died (exit code {proc.exitcode})")
    return float(value)


def time_evaluation(
    *,
    n: int,
    k: int,
    batch: int,
    steps: int,
    dtype: torch.dtype,
    tol: float | None,
    device="cpu",
    dt: float = 0.1,
    repeats: int = 1,
    split: bool = False,
    gemm: str = "auto",
    lapack: str = "auto",
) -> dict:
    """Throughput of evaluating a batch to ``steps * dt`` (fixed, or early exit with ``tol``).

    The model is a fresh (untrained) SA-nODE and the inputs are uniform in [0, 1]: the work
    saved by early exit here is illustrative; the MNIST saving is measured on a trained model
    (``sanode evaluate --early-exit``, README). ``split`` (bfloat16 only): two bfloat16
    products per step, A split in two parts; the row's dtype reads ``bfloat16x2``.
    """
    device = torch.device(device)
    if split and dtype != torch.bfloat16:
        raise ValueError(f"split products need dtype torch.bfloat16, got {dtype}")
    label = "bfloat16x2" if split else dtype
    dtype, mm = loop_dtypes(dtype)
    own = Products("bfloat16x2" if split else mm.name, gemm)
    model = SANode(
        block_patterns(n, k, 0.5),
        dtype=dtype,
        products=Products(mm.name, gemm),
        seed=0,
        eval_products=own,
        lapack=lapack,
    ).to(device)
    x0 = torch.rand(batch, n, generator=torch.Generator().manual_seed(2), dtype=dtype).to(device)
    t_end = steps * dt
    with torch.no_grad():
        dyn, finish = model.early_exit_dynamics()

    def run():
        if tol is None:
            return integrate(dyn, x0, t_end, dt), torch.full((batch,), steps)
        return integrate_until_converged(dyn, x0, t_end, dt, tol=tol, finish=finish)

    with torch.no_grad():
        seconds, (_, done) = median_seconds(run, repeats, device)
    variant = "eval" if tol is None else "eval-early"
    row = _row("eval", variant, label, steps, batch, n, seconds)
    return {**row, "work_fraction": float(done.sum()) / (batch * steps)}
