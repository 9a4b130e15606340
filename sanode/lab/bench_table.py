"""``sanode bench``'s table: every training and evaluation row beside its reference, the
matmul roofline measured right before each row, the ratios against float32, printed and
written as JSON (the rows' measurements: :mod:`sanode.lab.bench`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from ..core.coupling import lapack_route
from ..core.gemm import gemm_route
from ..runtime import matmul_precision, torch_dtype
from ..training.memory import keep_freed_memory
from .bench import (
    GEMMS_PER_STEP,
    matmul_flops,
    peak_training_mib,
    time_evaluation,
    time_training_step,
)


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
    device: str = "cpu",
    precision: str = "highest",
    memory: bool = True,
    eval_batch: int = 1000,
    eval_steps: int = 1200,
    eval_tol: float | None = 1e-4,
    gemm: str = "auto",
    lapack: str = "auto",
) -> list[dict]:
    """Print (and return) the benchmark table; every ratio is measured in this same run
    (``gemm`` / ``lapack``: the routes of every row's products and solves)."""
    keep_freed_memory()  # as training does
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    rows = []
    print(
        f"sanode bench: N={n}, K={k}, batch={batch}, device={dev}, threads="
        f"{torch.get_num_threads()}, float32 matmul precision={precision}, coupling solves: "
        f"{lapack_route(dev, torch.float32, lapack)}, products: "
        f"{gemm_route(dev, torch.float32, n * n, gemm)}"
    )
    with matmul_precision(precision):
        for name in dtypes:
            dtype = torch_dtype(name)
            with_naive = naive and dtype != torch.bfloat16
            jobs = [("naive", naive_steps)] if with_naive else []
            for s in steps:
                jobs += [("autograd", s), ("sanode", s)]
                if dtype == torch.bfloat16:
                    jobs += [("sanode-a32", s), ("sanode-fused", s)]
                if s >= 100:
                    jobs.append(("sanode-seg", s))
            train_rows = []
            for variant, s in jobs:
                flops = matmul_flops(n, batch, dtype, device=dev, gemm=gemm)
                size: dict[str, Any] = dict(
                    n=n, k=k, batch=batch, steps=s, dtype=dtype, gemm=gemm, lapack=lapack
                )
                reps = max(1, repeats - 1) if variant == "naive" else repeats
                r = time_training_step(variant, **size, device=dev, repeats=reps)
                _add_roofline(r, flops, GEMMS_PER_STEP[variant], n)
                if memory:
                    r["peak_mib"] = peak_training_mib(variant, **size, device=str(dev))
                train_rows.append(r)
            # the reference: the first naive row, or the first autograd row with --no-naive
            ref = next(
                r for r in train_rows if r["variant"] == ("naive" if with_naive else "autograd")
            )
            rows += _against(train_rows, ref)
            if eval_steps:
                for split in (False, True) if dtype == torch.bfloat16 else (False,):
                    eval_rows = []
                    for tol in (None, eval_tol) if eval_tol else (None,):
                        flops = matmul_flops(n, eval_batch, dtype, device=dev, gemm=gemm)
                        r = time_evaluation(
                            n=n,
                            k=k,
                            batch=eval_batch,
                            steps=eval_steps,
                            dtype=dtype,
                            tol=tol,
                            device=dev,
                            split=split,
                            gemm=gemm,
                            lapack=lapack,
                        )
                        eval_rows.append(_add_roofline(r, flops, 2 if split else 1, n))
                    rows += _against(eval_rows, eval_rows[0])
    _against_float32(rows)
    _print_rows(rows, naive_steps)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rows, indent=2))
    return rows


def _add_roofline(row: dict, flops: float, gemms: int, n: int) -> dict:
    """Attach the matmul speed measured before ``row`` and the row's fraction of the roofline
    ``flops / (2 N^2 gemms)`` image-steps/s."""
    row["matmul_gflops"] = flops / 1e9
    row["roofline_fraction"] = row["image_steps_per_s"] / (flops / (2 * gemms * n * n))
    return row


def _against(rows: list[dict], ref: dict) -> list[dict]:
    """Ratios of every row to ``ref``: raw throughput, and of roofline fractions (each row
    against the matmul speed measured right before it)."""
    for r in rows:
        r["reference"] = ref["variant"]
        r["vs_reference"] = r["image_steps_per_s"] / ref["image_steps_per_s"]
        r["vs_reference_normalised"] = r["roofline_fraction"] / ref["roofline_fraction"]
    return rows


def _against_float32(rows: list[dict]) -> None:
    """``vs_float32``: every row's throughput over the float32 row of the same kind, variant
    and steps (measured in this run), where there is one."""
    f32 = {(r["kind"], r["variant"], r["steps"]): r for r in rows if r["dtype"] == "float32"}
    speed = matmul_speeds(rows)
    for r in rows:
        ref = f32.get((r["kind"], r["variant"], r["steps"]))
        if ref is None and r["variant"] in ("sanode-a32", "sanode-fused"):  # A in float64
            ref = f32.get((r["kind"], "sanode", r["steps"]))
        if ref is not None:
            r["vs_float32"] = r["image_steps_per_s"] / ref["image_steps_per_s"]
            # the products' own speed-up in this run (the medians of every matmul measurement
            # of either dtype: one pair of them drifts), and the share of it the row reaches
            r["matmul_vs_float32"] = speed[r["dtype"]] / speed["float32"]
            r["of_matmul_ratio"] = r["vs_float32"] / r["matmul_vs_float32"]


def matmul_speeds(rows: list[dict]) -> dict[str, float]:
    """Median measured matmul GFLOP/s of each dtype over the rows (bfloat16x2 rows count as
    bfloat16: the same products)."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["dtype"].removesuffix("x2"), []).append(r["matmul_gflops"])
    speed = {name: statistics.median(values) for name, values in by.items()}
    speed.update({f"{name}x2": v for name, v in speed.items() if name == "bfloat16"})
    return speed


def _float32_columns(r: dict) -> str:
    if "vs_float32" not in r:
        return f"{'-':>6} {'-':>8} {'-':>6}"
    return f"{r['vs_float32']:>6.2f} {r['matmul_vs_float32']:>8.2f} {r['of_matmul_ratio']:>6.2f}"


def _print_rows(rows: list[dict], naive_steps: int) -> None:
    header = (
        f"{'variant':>10} {'dtype':>10} {'steps':>6} {'batch':>6} {'img*steps/s':>12} "
        f"{'roofline':>9} {'x ref':>6} {'x ref*':>7} {'saved MiB':>10} {'peak MiB':>9} "
        f"{'work':>6} {'matmul GF/s':>12} {'x f32':>6} {'mm x f32':>8} {'of mm':>6}"
    )
    print(header)
    speed = matmul_speeds(rows)
    for r in rows:
        saved = f"{r['saved_mib']:.1f}" if "saved_mib" in r else "-"
        peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        work = f"{r['work_fraction']:.3f}" if "work_fraction" in r else "-"
        print(
            f"{r['variant']:>10} {r['dtype']:>10} {r['steps']:>6} {r['batch']:>6} "
            f"{r['image_steps_per_s']:>12,.0f} {r['roofline_fraction']:>9.1%} "
            f"{r['vs_reference']:>6.1f} {r['vs_reference_normalised']:>7.1f} {saved:>10} "
            f"{peak:>9} {work:>6} {r['matmul_gflops']:>12.1f} " + _float32_columns(r)
        )
    if "float32" in speed and "bfloat16" in speed:
        print(
            "matmul ratio bfloat16 / float32 in this run: "
            f"{speed['bfloat16'] / speed['float32']:.2f} "
            f"({speed['bfloat16']:.0f} / {speed['float32']:.0f} GFLOP/s, medians of the rows' "
            "measurements)"
        )
    print(
        "x ref = throughput over the reference row of the same dtype (training: naive, or "
        "autograd with --no-naive; evaluation: fixed-step eval); x ref* = the ratio of roofline "
        "fractions, each row against the matmul speed measured right before it.\n"
        "roofline = measured matmul flop/s / (2 N^2 x GEMMs per step): 3 per training step, "
        "4 with checkpointed segments, 1 per evaluation step. eval-early counts the image-steps "
        "of the fixed run it replaces; work = the fraction of them it computed. "
        f"naive is timed at {naive_steps} steps (its cost per step does not depend on T).\n"
        "bfloat16 rows: float32 loop with bfloat16 matrix products (train_products), against a "
        "bfloat16 matmul roofline and the autograd row; bfloat16x2 rows: two bfloat16 products "
        "per evaluation step (A split in two parts; roofline counts both); x f32 = throughput "
        "over the float32 row of the same variant and steps (sanode-a32, sanode-fused: the "
        "float32 sanode row); mm x f32 = the matmul ratio of the run (above); of mm = x f32 / "
        "mm x f32, the share of the products' speed-up the row reaches."
    )
