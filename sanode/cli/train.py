"""``sanode train``: train a model and write its checkpoint (it resumes from it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (
    EVAL_COLUMNS,
    add_training_arguments,
    config_from_args,
    eval_rows,
    print_table,
    unit_interval,
)

NAME = "train"


def add(sub) -> None:
    p = sub.add_parser(NAME, help="train a model and write its checkpoint")
    p.add_argument("--out", help="checkpoint path (default runs/<dataset>/model.pt)")
    p.add_argument(
        "--no-resume", action="store_true", help="start over even if the checkpoint exists"
    )
    p.add_argument("--validate", action="store_true", help="score the test split after every epoch")
    p.add_argument(
        "--eps-test",
        type=unit_interval,
        nargs="*",
        default=[0.0],
        help="test noise levels of the final bucket table (default 0.0)",
    )
    add_training_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data.datasets import load_split
    from ..training.train import train

    cfg = config_from_args(args, parser)
    out = Path(args.out or f"runs/{cfg.dataset}/model.pt")
    train_split = load_split(cfg, "train")
    test_split = load_split(cfg, "test", letters_eps=0.0)
    val = None
    if args.validate:
        val = (test_split.x, test_split.y)
    result = train(
        cfg,
        train_split.x,
        train_split.y,
        train_split.patterns,
        val=val,
        checkpoint_path=out,
        resume=not args.no_resume,
        progress=not args.quiet,
    )
    for record in result.history:
        print(json.dumps(record), file=sys.stderr if args.quiet else sys.stdout)
    print(f"checkpoint: {out}")
    if args.eps_test:
        print_table(
            eval_rows(result.model, cfg, test_split, args.eps_test, cfg.seed),
            EVAL_COLUMNS[:-1],
        )
    return 0
