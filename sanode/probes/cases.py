"""Paper Fig. 7: one example of each outcome (exact, partial, wrong) with input, end and target."""

from __future__ import annotations

import pandas as pd
import torch

from ..core.metrics import bucket_of

CASES = ("exact", "partial", "wrong")  # the buckets of metrics.bucket_of, in its order


def three_cases(
    inputs: torch.Tensor,
    final: torch.Tensor,
    overlap: torch.Tensor,
    labels: torch.Tensor,
    patterns: torch.Tensor,
    *,
    threshold: float = 0.95,
) -> pd.DataFrame:
    """The first item of each outcome: one row per (case, panel, pixel).

    Panels: ``input`` (the image), ``final`` (the state at the evaluation horizon), ``target``
    (the planted pattern of its label). A case with no item is absent from the table.
    """
    outcome = [CASES[b] for b in bucket_of(overlap, threshold).tolist()]
    frames = []
    for case in CASES:
        if case not in outcome:
            continue
        i = outcome.index(case)
        label = int(labels[i])
        for panel, values in (
            ("input", inputs[i]),
            ("final", final[i]),
            ("target", patterns[label]),
        ):
            v = values.reshape(-1).to(torch.float64)
            frames.append(
                pd.DataFrame(
                    {
                        "case": case,
                        "item": i,
                        "label": label,
                        "overlap": float(overlap[i]),
                        "panel": panel,
                        "pixel": range(v.numel()),
                        "value": v.numpy(),
                    }
                )
            )
    if not frames:
        raise ValueError("no items to pick the three cases from")
    return pd.concat(frames, ignore_index=True)
