"""Dataset preparation for the pipeline: one cached tensor file per data set, with checksums.

The cache holds the train / validation / test splits as flattened float32 images in [0, 1],
int64 labels and the planted patterns, so later stages never touch the raw files again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..files import load_checkpoint, save_checkpoint, write_json
from .datasets import load_split
from .raw import sha256sum

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PreparedData:
    """The cached splits: ``splits[name] = (x (M, N), y (M,))``, patterns (K, N), checksums."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    patterns: torch.Tensor
    meta: dict[str, Any]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.splits[name]


def _carve_validation(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split (x, y) into train / validation, stratified per class, seeded."""
    gen = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        take = max(1, round(fraction * len(idx)))
        val_idx.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    val = torch.cat(val_idx).sort().values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[val] = False
    return (x[mask], y[mask]), (x[val], y[val])


def prepare_dataset(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    test_per_class: int | None = None,
) -> dict[str, Any]:
    """Build and cache the splits of ``cfg.dataset`` at ``out`` (a ``.pt`` file).

    Letters: train and validation are clean copies (training noise is drawn per epoch),
    test is a separate set of clean copies (test noise is drawn per evaluation).
    MNIST / Fashion-MNIST: ``cfg.per_class`` (if set) subsets the training set, the
    validation split is a stratified ``val_fraction`` of it, ``test_per_class`` subsets the
    test set (default: all 10,000 images).

    Returns:
        The metadata written beside the cache (``out`` with suffix ``.json``): sizes, raw-file
        MD5s and the SHA-256 of the cache file.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    train = load_split(cfg, "train")
    (x_tr, y_tr), (x_val, y_val) = _carve_validation(train.x, train.y, val_fraction, cfg.seed)
    test_cfg = cfg.replace(per_class=test_per_class) if cfg.dataset != "letters" else cfg
    # nothing is written before both splits passed their checks (load_split raises)
    test = load_split(test_cfg, "test")
    splits = {"train": (x_tr, y_tr), "val": (x_val, y_val), "test": (test.x, test.y)}
    out = Path(out)
    save_checkpoint(
        out,
        {
            "splits": {k: {"x": v[0], "y": v[1]} for k, v in splits.items()},
            "patterns": train.patterns,
            "dataset": cfg.dataset,
        },
    )
    meta = {
        "dataset": cfg.dataset,
        "sizes": {k: len(v[1]) for k, v in splits.items()},
        "num_nodes": int(train.x.shape[1]),
        "num_classes": int(train.patterns.shape[0]),
        "raw_md5": train.checksums,
        "cache_sha256": sha256sum(out),
        "settings": cfg.to_dict(),
        "val_fraction": val_fraction,
        "test_per_class": test_per_class,
    }
    write_json(out.with_suffix(".json"), meta, what="data record")
    return meta


def load_prepared(path: str | os.PathLike) -> PreparedData:
    """Read a cache written by :func:`prepare_dataset` (``weights_only``) and its metadata."""
    payload = load_checkpoint(path)
    meta_path = Path(path).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    splits = {k: (v["x"], v["y"]) for k, v in payload["splits"].items()}
    return PreparedData(splits=splits, patterns=payload["patterns"], meta=meta)
