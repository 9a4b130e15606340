"""``sanode ablation``: each accuracy lever switched on alone over a base recipe, at the base
run's training work, trained and scored on the whole test set (the ablation table)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli.common import add_training_arguments, config_from_args, optional_float

NAME = "ablation"


def add(sub) -> None:
    from .ablation import ARMS

    p = sub.add_parser(
        NAME,
        help="each accuracy lever on alone over a base recipe at equal training work",
        description=__doc__.splitlines()[0].split(": ", 1)[1]
        + " Arms: "
        + ", ".join(f"{a.name} ({a.what})" for a in ARMS)
        + ".",
    )
    p.add_argument("--out", help="run folder (default runs/ablation/<dataset>)")
    p.add_argument("--arms", help="comma-separated arms to run besides base (default: all of them)")
    p.add_argument("--result", help="also write the table's JSON here (e.g. results/ablation/)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of train")
    p.add_argument("--t-test", type=float, default=120.0, help="test evaluation horizon")
    p.add_argument(
        "--test-tol", type=optional_float, default=1e-4, help="test early-exit tol, or 'none'"
    )
    add_training_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .ablation import arms_named, run_ablation

    cfg = config_from_args(args, parser)
    arms = arms_named(None if not args.arms else [a.strip() for a in args.arms.split(",")])
    out_dir = Path(args.out or f"runs/ablation/{cfg.dataset}")
    summary = run_ablation(
        cfg,
        out_dir,
        arms=arms,
        val_fraction=args.val_fraction,
        t_test=args.t_test,
        test_tol=args.test_tol,
        progress=not args.quiet,
        result_path=args.result,
    )
    for r in summary["rows"]:
        delta = r.get("delta_test_points")
        print(
            f"{r['arm']:>12}: {r['epochs']:>3} epochs, {r['train_wall_s']:7.0f} s, test H "
            f"{r['test_accuracy']:.4f} ({r['exact']}/{r['partial']}/{r['wrong']})"
            + ("" if delta is None or r["arm"] == "base" else f", {delta:+.2f} points")
        )
    print(f"result: {out_dir / 'ablation.json'}")
    return 0
