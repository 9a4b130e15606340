"""Trials per hour of the search on this machine: one trial at a time on every core against as
many 1-thread trials at once as there are cores (``resources.cpus_per_trial``).

Runs the search config's study (``workflow/config/search.yaml``, its search space, searcher
and settings) through the pipeline's own prepare and tune stages, twice, on a balanced subset
of the training images and a few epochs so that both fit in minutes, with the FIFO scheduler
(every trial runs every epoch, so the two runs do the same work: Optuna's first suggestions
are seeded random draws, the same trials in both). Writes the wall time, trials and epochs
per hour of each and their ratio.

    python sanode/lab/scripts/trials_per_hour.py --out results/bench/trials-per-hour.json
        [--study mnist] [--per-class 300] [--epochs 2] [--trials 4]

Needs the data (``--mirror`` or ``$SANODE_DATA_MIRROR``, else torchvision downloads).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from sanode.pipeline import stages as pipeline


def _config(base: dict, study: str, args, cpus_per_trial: int, concurrent: int, root: Path):
    config = copy.deepcopy(base)
    block = config["studies"][study]
    config["studies"] = {study: block}
    block["train"] = {**block["train"], "per_class": args.per_class, "epochs": args.epochs}
    block["num_samples"] = args.trials
    block["scheduler"] = {"name": "fifo"}
    block["searcher"] = {**block.get("searcher", {}), "max_concurrent": concurrent}
    block["resources"] = {"cpus_per_trial": cpus_per_trial}
    config["project"] = {**config["project"], "mirror": args.mirror, "workdir": str(root)}
    config["mlflow"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "tph"}
    config["ray"] = {**config.get("ray", {}), "num_cpus": args.cores}
    return config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="workflow/config/search.yaml")
    p.add_argument("--study", default="mnist")
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mirror", default=os.environ.get("SANODE_DATA_MIRROR"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    base = yaml.safe_load(Path(args.config).read_text())
    rows = []
    (Path.cwd() / "runs").mkdir(exist_ok=True)  # scratch beside the other runs (ignored)
    with tempfile.TemporaryDirectory(prefix="tph-", dir=Path.cwd() / "runs") as scratch:
        scratch = Path(scratch)
        data = scratch / "data.pt"
        modes = [(args.cores, 1), (1, args.cores)]  # (cpus per trial, trials at once)
        for cpus, concurrent in modes:
            root = scratch / f"cpus{cpus}"
            root.mkdir()
            config = _config(base, args.study, args, cpus, concurrent, root)
            if not data.exists():
                pipeline.prepare_stage(config, args.study, str(data))
            start = time.perf_counter()
            cwd = Path.cwd()
            os.chdir(root)
            try:
                pipeline.tune_stage(
                    config,
                    args.study,
                    str(data),
                    str(root / "tune"),
                    str(root / "ray"),
                    threads=args.cores,
                )
            finally:
                os.chdir(cwd)
            wall = time.perf_counter() - start
            table = pd.read_parquet(root / "tune" / "trials.parquet")
            epochs = len(table)
            best = float(table["val_accuracy"].max())
            rows.append(
                {
                    "cpus_per_trial": cpus,
                    "trials_at_once": concurrent,
                    "wall_s": wall,
                    "trials": int(table["trial_id"].nunique()),
                    "epochs": epochs,
                    "trials_per_hour": args.trials * 3600 / wall,
                    "epochs_per_hour": epochs * 3600 / wall,
                    "best_val_accuracy": best,
                }
            )
            print(
                f"{cpus} CPU(s) per trial, {concurrent} at once: {wall:.0f} s, "
                f"{rows[-1]['trials_per_hour']:.1f} trials/h, best val H {best:.4f}"
            )
    result = {
        "study": args.study,
        "config": args.config,
        "per_class": args.per_class,
        "epochs": args.epochs,
        "trials": args.trials,
        "cores": args.cores,
        "torch_threads_default": torch.get_num_threads(),
        "rows": rows,
        "ratio_trials_per_hour": rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"],
    }
    print(
        f"{args.cores} x 1-thread trials give {result['ratio_trials_per_hour']:.2f}x the "
        f"trials per hour of one {args.cores}-thread trial"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
