"""One entry point for every data set a run can use: letters, MNIST, Fashion-MNIST, and a
user's own (torchvision's other grayscale sets, an .npz, an image folder: data.custom)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import TrainConfig, dataset_kind
from ..core.patterns import block_patterns
from .custom import load_arrays
from .letters import LETTER_NAMES, letters_dataset
from .raw import DataError, balanced_subset, load_images, prepare_raw


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
    kind = dataset_kind(cfg.dataset)
    if kind == "letters":
        seed = cfg.seed * 2 + (0 if split == "train" else 1)
        x, y = letters_dataset(cfg.letters_copies, letters_eps, seed=seed)
        k = len(LETTER_NAMES)
        checksums: dict[str, str] = {}
    elif kind != "idx":  # torchvision's other sets, an .npz, an image folder (data.custom)
        if split not in ("train", "test"):
            raise DataError(f"unknown split {split!r}; choose train or test")
        arrays = load_arrays(
            cfg.dataset,
            root=cfg.data_root,
            mirror=cfg.mirror,
            image_size=cfg.image_size,
            verify_checksums=cfg.verify_checksums,
        )
        x, y = arrays.split(split)
        if cfg.per_class is not None:
            keep = balanced_subset(y, cfg.per_class, seed=cfg.seed)
            x, y = x[keep], y[keep]
        k = int(arrays.y_train.max()) + 1
        checksums = arrays.checksums
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
