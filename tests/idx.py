"""Tiny IDX files in torchvision's raw layout, written by the tests themselves."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_mirror(
    root: Path,
    folder: str = "MNIST",
    *,
    n_train: int = 40,
    n_test: int = 20,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``root/<folder>/raw/*-ubyte[.gz]`` with random 28x28 images, balanced labels."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, count in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        for name, arr in zip(FILES[split], (images, labels), strict=True):
            data = idx_bytes(arr)
            if gz:
                with gzip.open(raw / (name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (raw / name).write_bytes(data)
        out[split] = (images, labels)
    return out
