"""``sanode time-to-accuracy``: the wall time from a fresh model to a validation H target,
and the final test H (MLPerf-style)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli.common import add_training_arguments, config_from_args, optional_float, unit_interval

NAME = "time-to-accuracy"


def add(sub) -> None:
    p = sub.add_parser(
        NAME,
        help="wall time from a fresh model to a validation H target, and the final test H",
    )
    p.add_argument("--out", help="run folder (default runs/tta/<dataset>-<matmul dtype>)")
    p.add_argument("--target", type=unit_interval, default=0.97, help="validation H target")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of train")
    p.add_argument(
        "--stop-at-target", action="store_true", help="stop at the target, not the schedule's end"
    )
    p.add_argument("--t-test", type=float, default=120.0, help="test evaluation horizon")
    p.add_argument(
        "--test-tol", type=optional_float, default=1e-4, help="test early-exit tol, or 'none'"
    )
    p.add_argument(
        "--compare-dtypes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score the final model with the other product modes (bucket moves)",
    )
    p.add_argument(
        "--trace-batches",
        action="store_true",
        help="also write every batch's diagnostics (gamma, clip shares, gradient norms) to "
        "<out>/batches.jsonl",
    )
    p.add_argument(
        "--audit",
        action="store_true",
        help="also score every epoch's model on the whole validation and test splits, outside "
        "the timed wall: how a validation subset (--val-per-class) agrees with them",
    )
    add_training_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .time_to_accuracy import time_to_accuracy

    cfg = config_from_args(args, parser)
    out_dir = Path(args.out or f"runs/tta/{cfg.dataset}-{cfg.train_products or cfg.dtype}")
    summary = time_to_accuracy(
        cfg,
        out_dir,
        target=args.target,
        val_fraction=args.val_fraction,
        stop_at_target=args.stop_at_target,
        t_test=args.t_test,
        test_tol=args.test_tol,
        compare_dtypes=args.compare_dtypes,
        progress=not args.quiet,
        trace_batches=args.trace_batches,
        audit=args.audit,
    )
    reached = summary["time_to_target_s"]
    test = summary["test"]
    print(
        f"{summary['dataset']}, {summary['train_products']} training products, "
        f"{summary['eval_products']} evaluation: validation H >= {args.target:.3f} "
        + (
            f"after {summary['epochs_to_target']} epochs, {reached:.0f} s"
            if reached is not None
            else f"not reached in {summary['epochs_run']} epochs "
            f"(best {summary['best_val_accuracy']:.4f})"
        )
        + f"; test H {test['accuracy']:.4f} ({test['exact']}/{test['partial']}/{test['wrong']}) "
        f"after {summary['epochs_run']} epochs, {summary['train_wall_s']:.0f} s"
    )
    print(
        "validation H levels: "
        + ", ".join(
            f"{level} "
            + (f"epoch {hit['epoch']} ({hit['wall_s']:.0f} s)" if hit else "not reached")
            for level, hit in summary["levels"].items()
        )
    )
    for sw in summary.get("eval_switches", []):
        print(
            f"evaluated with {sw['eval_products']} products instead: test H "
            f"{sw['test']['accuracy']:.4f}, {sw['items_changing_bucket']} items change bucket, "
            f"{sw['sign_flips']} of {sw['signs']} final signs flip"
        )
    if summary.get("agreement"):
        agree = summary["agreement"]
        sub, test = agree["val_vs_whole_val"], agree["val_vs_test"]
        print(
            f"audit of {agree['epochs']} epochs: validation vs whole validation split "
            f"{sub['mean_points']:.2f} points on average (max {sub['max_points']:.2f}); vs test "
            f"{test['mean_points']:.2f} (max {test['max_points']:.2f})"
        )
    print(f"result: {out_dir / 'result.json'}")
    return 0
