"""One entry point for every data set a run can use: letters, MNIST, Fashion-MNIST."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import TrainConfig
from ..core.patterns import block_patterns
from .letters import LETTER_NAMES, letters_dataset
from .raw import load_images, prepare_raw


@dataclass(frozen=True)
class DataSplit:
    """Flattened images x (M, N) in [0, 1], labels y (M,), planted patterns (K, N)."""

    x: torch.Tensor
    y: torch.Tensor
    patterns: torch.Tensor
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.patterns.shape[0]


def load_split(cfg: TrainConfig, split: str, *, letters_eps: float = 0.0) -> DataSplit:
    """The ``train`` or ``test`` split of ``cfg.dataset``.

    Letters: ``cfg.letters_copies`` copies of each letter, noisy at ``letters_eps``, with a
    split-specific seed. Images: torchvision files under ``cfg.data_root`` (download or mirror),
    optionally a balanced ``cfg.per_class`` subset.
    """
    if cfg.dataset == "letters":
        seed = cfg.seed * 2 + (0 if split == "train" else 1)
        x, y = letters_dataset(cfg.letters_copies, letters_eps, seed=seed)
        k = len(LETTER_NAMES)
        checksums: dict[str, str] = {}
    else:
        checksums = prepare_raw(
            cfg.dataset, cfg.data_root, mirror=cfg.mirror, verify_checksums=cfg.verify_checksums
        )
        x, y = load_images(
            cfg.dataset,
            split,
            cfg.data_root,
            mirror=cfg.mirror,
            verify_checksums=cfg.verify_checksums,
            per_class=cfg.per_class,
            seed=cfg.seed,
        )
        k = 10
    return DataSplit(x, y, block_patterns(x.shape[1], k, cfg.a), checksums)
