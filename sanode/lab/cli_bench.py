"""``sanode bench``: training-step and evaluation throughput beside their references, the
matmul roofline and the bfloat16 / float32 ratios of one run."""

from __future__ import annotations

import argparse

from ..cli.common import deprecated_alias, optional_float
from ..config import CHOICES

NAME = "bench"


def add(sub) -> None:
    p = sub.add_parser(
        NAME, help="training-step throughput beside the naive variant and the matmul roofline"
    )
    p.add_argument("--n", type=int, default=784, help="nodes N (pixels; default 784)")
    p.add_argument("--k", type=int, default=10, help="classes K (default 10)")
    p.add_argument("--batch", type=int, default=200, help="training batch (default 200)")
    p.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[55, 600],
        help="Euler steps per training pass (default 55 600)",
    )
    p.add_argument(
        "--train-products",
        nargs="+",
        choices=CHOICES["train_products"],
        default=["float32", "bfloat16", "float64"],
        help="the training products of the rows: bfloat16 is a float32 loop with bfloat16 "
        "matrix products; auto: what this machine's measurement chooses",
    )
    deprecated_alias(
        p,
        "--dtypes",
        "--train-products",
        "train_products",
        nargs="+",
        choices=CHOICES["train_products"],
    )
    p.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the authors' per-step-inverse variant (55 steps)",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="timed repeats per row, the median kept (default 3)"
    )
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--matmul-precision",
        choices=CHOICES["matmul_precision"],
        default="highest",
        help="float32 matmul precision (high = TF32 on CUDA)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure each training row's peak memory in a fresh process",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=1000,
        help="evaluation batch of the eval rows (default 1000)",
    )
    p.add_argument(
        "--eval-steps", type=int, default=1200, help="evaluation horizon in steps (0: no eval rows)"
    )
    p.add_argument(
        "--eval-tol", type=optional_float, default=1e-4, help="early-exit tolerance, or 'none'"
    )
    p.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead of the table: ROUNDS interleaved rounds per step count of the float32 "
        "and the bfloat16 training step and matmul blocks, the bfloat16 speed-up as a share of "
        "the matmul ratio (median over rounds; CPU)",
    )
    p.add_argument(
        "--lapack",
        choices=["auto", "openblas", "torch"],
        default="auto",
        help="the LAPACK of the coupling matrix's solves in every row (sanode.core.coupling): "
        "auto (scipy's OpenBLAS on the CPU where its thread settings hold), or one of them",
    )
    p.add_argument(
        "--gemm",
        choices=["auto", "onednn", "torch"],
        default="auto",
        help="the route of the loops' float32 and bfloat16 products in every row "
        "(sanode.core.gemm): auto (oneDNN where torch's CPU GEMM is MKL on an AMD processor), "
        "or one of them",
    )
    p.add_argument(
        "--auto",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(CPU) also time a training step of every explicit products/route choice and "
        "print what auto chose here as a share of the fastest (a line 'auto: ...'; with "
        "--out also written beside it as <out stem>.auto.json)",
    )
    p.add_argument("--out", help="also write the table as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..core.gemm import onednn_available
    from ..runtime import resolve_device
    from .bench_table import run_benchmark

    if args.gemm == "onednn" and not onednn_available():
        parser.error(
            "--gemm onednn needs torch's oneDNN linear kernels (a torch build for x86 CPUs "
            "with oneDNN); use --gemm torch"
        )
    if args.paired:
        return _paired(args, parser)
    run_benchmark(
        n=args.n,
        k=args.k,
        batch=args.batch,
        steps=args.steps,
        dtypes=args.train_products,
        naive=args.naive,
        repeats=args.repeats,
        threads=args.threads,
        out=args.out,
        device=str(resolve_device(args.device)),
        precision=args.matmul_precision,
        memory=args.memory,
        eval_batch=args.eval_batch,
        eval_steps=args.eval_steps,
        eval_tol=args.eval_tol,
        gemm=args.gemm,
        lapack=args.lapack,
    )
    if args.auto and resolve_device(args.device).type == "cpu":
        _auto(args)
    return 0


def _auto(args: argparse.Namespace) -> None:
    """The ``auto:`` line (and ``<out stem>.auto.json``)."""
    import json
    from pathlib import Path

    from .bench_auto import auto_line, auto_versus_explicit

    result = auto_versus_explicit(
        n=args.n, k=args.k, batch=args.batch, steps=min(args.steps), rounds=args.repeats
    )
    print(auto_line(result))
    if args.out:
        path = Path(args.out)
        # a list of one row: what report:columns renders
        path.with_name(path.stem + ".auto.json").write_text(json.dumps([result], indent=2))


def _paired(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json
    from pathlib import Path

    import torch

    from ..training.memory import keep_freed_memory
    from .bench_paired import paired_speedup, print_paired

    if args.paired < 1 or args.device != "cpu":
        parser.error("--paired needs a positive round count and --device cpu")
    keep_freed_memory()  # as training does
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        paired_speedup(
            n=args.n,
            k=args.k,
            batch=args.batch,
            steps=s,
            rounds=args.paired,
            gemm=args.gemm,
            lapack=args.lapack,
        )
        for s in args.steps
    ]
    print_paired(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0
