"""``sanode evaluate``: the accuracy buckets of a checkpoint (the pipeline's evaluation)."""

from __future__ import annotations

import argparse
import json

from ..config import CHOICES, ConfigError
from .common import EVAL_COLUMNS, deprecated_alias, eval_rows, print_table, unit_interval

NAME = "evaluate"


def add(sub) -> None:
    p = sub.add_parser(NAME, help="print the accuracy buckets of a checkpoint")
    p.add_argument("checkpoint", help="a model file written by sanode train (.pt)")
    p.add_argument(
        "--eps-test",
        type=unit_interval,
        nargs="+",
        default=[0.0],
        help="test pixel-noise level(s) in [0, 1] (default 0)",
    )
    p.add_argument(
        "--split",
        choices=["train", "test"],
        default="test",
        help="the data split scored (default test)",
    )
    p.add_argument("--t-eval", type=float, help="evaluation horizon (default: the checkpoint's)")
    p.add_argument("--dt", type=float, help="integration time step (default: the checkpoint's)")
    p.add_argument(
        "--method", choices=CHOICES["method"], help="fixed-step solver (default: the checkpoint's)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first test-noise draw (as the evaluate block's seed: same inputs)",
    )
    p.add_argument("--mirror", help="mirror folder of the MNIST/Fashion-MNIST IDX files")
    p.add_argument("--data-root", help="data folder (default: the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--early-exit",
        type=float,
        metavar="TOL",
        help="stop each item once max|F(x)| < TOL (t-eval stays the upper bound)",
    )
    p.add_argument(
        "--matmul-precision",
        choices=CHOICES["matmul_precision"],
        help="float32 matmul precision: high = TF32 on CUDA (default: the checkpoint's)",
    )
    p.add_argument(
        "--eval-products",
        choices=CHOICES["eval_products"],
        help="the evaluation's matrix products (default: the checkpoint's eval_products); "
        "bfloat16x2: two bfloat16 products, A split in a high and a low part; float32 loops "
        "only; auto: the fastest measured here",
    )
    deprecated_alias(p, "--matmul-dtype", "--eval-products", "eval_products")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data.datasets import load_split
    from ..training.checkpoint import load_model

    try:
        model, cfg, _ = load_model(args.checkpoint)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    overrides = {
        k: v
        for k, v in (
            ("t_eval", args.t_eval),
            ("dt", args.dt),
            ("method", args.method),
            ("mirror", args.mirror),
            ("data_root", args.data_root),
            ("matmul_precision", args.matmul_precision),
        )
        if v is not None
    }
    try:
        cfg = cfg.replace(**overrides)
    except ConfigError as err:
        parser.error(str(err))
    if args.eval_products is not None:  # e.g. evaluate a float32-trained model in bfloat16
        try:
            cfg = cfg.replace(eval_products=args.eval_products)
            model.eval_products = cfg.precision(model.num_nodes).eval
        except (ConfigError, ValueError) as err:
            parser.error(str(err))
    if args.early_exit is not None and not args.early_exit > 0:
        parser.error(f"--early-exit must be a tolerance > 0 (e.g. 1e-4), got {args.early_exit}")
    split = load_split(cfg, args.split, letters_eps=0.0)
    rows = eval_rows(model, cfg, split, args.eps_test, args.seed, tol=args.early_exit)
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows, EVAL_COLUMNS)
        if args.early_exit:
            print("work_fraction = matrix products done / those of the fixed-step run")
    return 0
