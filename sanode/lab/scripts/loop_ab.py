"""The Euler loop of this checkout against the one of an earlier revision, in one run.

Loads ``sanode/core/euler_grad.py`` as it was at ``--old`` (``git show``) beside the current
module and times, interleaved in rounds, one training pass of the model through each: the
forward Euler loop and its lean backward pass (the loss's backward included, the optimiser
step not), at batch 200, N = 784, T_train 5.5, dt 0.1 (55 steps), bfloat16 products with A in
float32 (the recipe's training pass), with and without ``grad_segment: auto``. Also reports
each loop's gradients against a float64 pass (the same model, float64 loop and products).
Medians over rounds; the ratio is per round (both loops timed in the same minute).

    python sanode/lab/scripts/loop_ab.py results/bench/loop-ab.json --old 06a1563 [--rounds 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bf16_capability import cpu_model  # this folder's script (on sys.path when run)

import sanode.core.model as model_module
from sanode import TrainConfig, block_patterns
from sanode.core import euler_grad
from sanode.files import write_json
from sanode.training.checkpoint import model_from_config
from sanode.training.losses import final_state_loss


def old_module(revision: str):
    """``sanode.core.euler_grad`` as it was at ``revision`` (a module of its own)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:sanode/core/euler_grad.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "euler_grad_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("euler_grad_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--old", required=True, help="git revision of the loop to compare")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="passes timed per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loops = {"old": old_module(args.old).euler_loop, "new": euler_grad.euler_loop}
    patterns = block_patterns(784, 10, a=0.5)
    cfg = TrainConfig(dataset="mnist", train_products="bfloat16", coupling_dtype="float32")
    model = model_from_config(cfg, patterns)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 784, generator=gen) - 0.5
    y = torch.randint(0, 10, (200,), generator=gen)
    targets = patterns.to(torch.float64)

    def grads(segment) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        out = model(x, 5.5, 0.1, grad_segment=segment)
        final_state_loss(out, targets, y, a=0.5).backward()
        return [p.grad.detach().clone() for p in model.parameters()]

    model_module.euler_loop = euler_grad.euler_loop
    reference = model_from_config(
        TrainConfig(dataset="mnist", dtype="float64", coupling_dtype="float64"), patterns
    )
    reference.load_state_dict(model.state_dict())
    reference.zero_grad(set_to_none=True)
    final_state_loss(reference(x, 5.5, 0.1), targets, y, a=0.5).backward()
    exact = [p.grad for p in reference.parameters()]
    rows = []
    for segment in (None, "auto"):
        times: dict[str, list[float]] = {name: [] for name in loops}
        errors = {}
        for name, loop in loops.items():
            model_module.euler_loop = loop
            got = grads(segment)
            pairs = zip(got, exact, strict=True)
            errors[name] = max(float((g - e).norm() / e.norm()) for g, e in pairs)
        for _ in range(args.rounds):
            for name, loop in loops.items():
                model_module.euler_loop = loop
                grads(segment)  # warm
                start = time.perf_counter()
                for _ in range(args.repeats):
                    grads(segment)
                times[name].append((time.perf_counter() - start) / args.repeats)
        ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
        rows.append(
            {
                "grad_segment": segment,
                "old_pass_s": statistics.median(times["old"]),
                "new_pass_s": statistics.median(times["new"]),
                "speedup": statistics.median(ratios),
                "speedup_min": min(ratios),
                "speedup_max": max(ratios),
                "old_grad_rel_error_vs_float64": errors["old"],
                "new_grad_rel_error_vs_float64": errors["new"],
            }
        )
        print(rows[-1])
    model_module.euler_loop = euler_grad.euler_loop
    write_json(
        args.out,
        {
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "threads": args.threads,
            "old_revision": args.old,
            "rounds": args.rounds,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
