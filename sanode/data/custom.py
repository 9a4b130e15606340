"""A user's own data set: other torchvision grayscale sets by name, an ``.npz`` of arrays, or a
folder of images in ``ImageFolder`` layout. N and K come from the data.

``dataset`` (config, ``--dataset``) is one of:

* ``letters``, ``mnist``, ``fashion`` (:mod:`sanode.data.letters`, :mod:`sanode.data.raw`);
* ``kmnist``, ``qmnist``, ``emnist-<split>`` (split: byclass, bymerge, balanced, letters,
  digits, mnist): torchvision downloads them into ``data_root`` (its MD5 checks), or reads
  them from the mirror folder in torchvision's layout (``<mirror>/KMNIST/raw/...``);
* a path to an ``.npz`` holding ``x_train, y_train, x_test, y_test``: images ``(M, H, W)`` or
  ``(M, N)`` of any numeric dtype, scaled to [0, 1] by the range of both image arrays together
  (``(x - min) / (max - min)``), labels the integers 0..K-1;
* a path to a folder with ``train/<class>/*`` and ``test/<class>/*`` images (PNG, JPEG, ...),
  converted to grayscale, classes numbered in sorted order of their folder names; images of
  mixed sizes need ``image_size`` (each resized to ``image_size`` x ``image_size``).

Every problem is one :class:`~sanode.data.raw.DataError` line saying what and how to fix it,
raised before anything is written: N < K + 2 (the planted patterns' block rule), labels
outside 0..K-1 or a class missing from the training split, arrays of different lengths, mixed
image sizes without ``image_size``, an empty class folder, a file that is not an image, NaN
or infinite values.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import TORCHVISION, dataset_kind, named_sets
from .raw import DataError, md5sum, sha256sum

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")


@dataclass
class Arrays:
    """Both splits of a data set as flat float32 images in [0, 1] and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: tuple[int, ...]  # (H, W) of an image, or (N,) for flat arrays
    checksums: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)


def load_arrays(
    name: str,
    *,
    root: str | os.PathLike = "data",
    mirror: str | os.PathLike | None = None,
    image_size: int | None = None,
    verify_checksums: bool = True,
) -> Arrays:
    """The data set ``name`` of kind ``torchvision``, ``npz`` or ``folder``, checked
    (:func:`check_arrays`)."""
    kind = dataset_kind(name)
    if kind == "npz":
        arrays = _npz(Path(name).expanduser())
    elif kind == "folder":
        arrays = _folder(Path(name).expanduser(), image_size)
    elif kind == "torchvision":
        arrays = _torchvision(name, root, mirror, verify_checksums)
    else:
        raise DataError(f"dataset {name!r} is a built-in set; load it with load_split")
    check_arrays(arrays, name)
    return arrays


def check_arrays(a: Arrays, source: str) -> None:
    """The rules a data set must follow (one :class:`DataError` line each)."""
    for split in ("train", "test"):
        x, y = a.split(split)
        if len(x) != len(y):
            raise DataError(
                f"{source}: {split} has {len(x)} images but {len(y)} labels; give one label "
                "per image"
            )
        if len(x) == 0:
            raise DataError(f"{source}: the {split} split is empty; give it images")
    k = int(a.y_train.max()) + 1 if len(a.y_train) else 0
    low = int(min(a.y_train.min(), a.y_test.min()))
    high = int(max(a.y_train.max(), a.y_test.max()))
    if low < 0 or high >= k:
        raise DataError(
            f"{source}: labels must be the integers 0..K-1 with K = {k} classes in the training "
            f"split, found {low}..{high}; renumber them from 0"
        )
    missing = sorted(set(range(k)) - set(a.y_train.unique().tolist()))
    if missing:
        raise DataError(
            f"{source}: class(es) {missing} of 0..{k - 1} have no training image; renumber the "
            "classes without gaps or add images"
        )
    n = a.x_train.shape[1]
    if a.x_test.shape[1] != n:
        raise DataError(
            f"{source}: training images have {n} pixels, test images {a.x_test.shape[1]}; give "
            "both splits one image size"
        )
    if n < k + 2:
        raise DataError(
            f"{source}: N = {n} pixels for K = {k} classes; the planted patterns need N >= K + 2 "
            f"= {k + 2} (larger images or fewer classes)"
        )


def _labels(y: np.ndarray, source: str, key: str) -> torch.Tensor:
    if y.ndim != 1:
        raise DataError(f"{source}: {key} must be a flat array of labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{source}: {key} must hold whole-number class labels (0..K-1)")
    return torch.from_numpy(y.astype(np.int64))


def _npz(path: Path) -> Arrays:
    source = str(path)
    if not path.is_file():
        raise DataError(f"dataset {source}: no such .npz file; give the path of an existing file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise DataError(
                    f"{source}: the .npz lacks {missing}; it needs arrays named "
                    f"{list(NPZ_KEYS)} (it has {data.files})"
                )
            arrays = {k: np.asarray(data[k]) for k in NPZ_KEYS}
    except (ValueError, OSError) as err:
        raise DataError(f"{source}: not a readable .npz archive ({err})") from None
    xs = []
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"{source}: {key} must be numeric, got dtype {x.dtype}")
        if x.ndim not in (2, 3):
            raise DataError(
                f"{source}: {key} must be images (M, H, W) or flat (M, N), got shape {x.shape}"
            )
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise DataError(f"{source}: {key} holds NaN or infinite values; clean them first")
        xs.append(x)
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(
            f"{source}: x_train images are {xs[0].shape[1:]}, x_test images {xs[1].shape[1:]}; "
            "give both splits one image size"
        )
    lo = min(float(x.min()) for x in xs if x.size)
    hi = max(float(x.max()) for x in xs if x.size)
    if not hi > lo:
        raise DataError(f"{source}: every pixel has the value {lo}; the images hold no signal")
    flat = [
        torch.from_numpy(((x - lo) / (hi - lo)).reshape(len(x), -1).astype(np.float32)) for x in xs
    ]
    return Arrays(
        flat[0],
        _labels(arrays["y_train"], source, "y_train"),
        flat[1],
        _labels(arrays["y_test"], source, "y_test"),
        shape=tuple(xs[0].shape[1:]),
        checksums={path.name: sha256sum(path)},
    )


def _folder(path: Path, image_size: int | None) -> Arrays:
    from PIL import Image, UnidentifiedImageError

    source = str(path)
    if not path.is_dir():
        raise DataError(
            f"dataset {source}: neither a data set name ({', '.join(named_sets())}) nor an "
            "existing .npz file or image folder"
        )
    classes = (
        sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
        if (path / "train").is_dir()
        else []
    )
    if not classes or not (path / "test").is_dir():
        raise DataError(
            f"{source}: an image folder needs train/<class>/ and test/<class>/ subfolders "
            "(ImageFolder layout)"
        )
    test_classes = sorted(p.name for p in (path / "test").iterdir() if p.is_dir())
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DataError(f"{source}: test classes {extra} have no train folder; add them there")
    digest = hashlib.sha256()
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    sizes: set[tuple[int, int]] = set()
    for split in ("train", "test"):
        images: list[np.ndarray] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            folder = path / split / name
            files = sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
            if split == "train" and not files:
                raise DataError(f"{folder}: an empty class folder; add images or remove it")
            for f in files:
                try:
                    with Image.open(f) as image:
                        sizes.add(image.size)
                        grey = image.convert("L")
                        if image_size is not None:
                            grey = grey.resize((image_size, image_size), Image.Resampling.BOX)
                        images.append(np.asarray(grey, dtype=np.float32) / 255.0)
                except (UnidentifiedImageError, OSError):
                    raise DataError(
                        f"{f}: not an image PIL can read; remove it from the data folder"
                    ) from None
                labels.append(label)
                digest.update(f"{split}/{name}/{f.name}".encode())
                digest.update(f.read_bytes())
        out[split] = (images, labels)
    if image_size is None and len(sizes) > 1:
        shown = sorted(f"{w}x{h}" for w, h in sizes)[:4]
        raise DataError(
            f"{source}: images of mixed sizes ({', '.join(shown)}, ...); set image_size (e.g. "
            f"--image-size 28) to resize every image to one square size"
        )
    stacked = {
        s: torch.from_numpy(np.stack(imgs).reshape(len(imgs), -1)) if imgs else torch.empty(0, 0)
        for s, (imgs, _) in out.items()
    }
    shape = out["train"][0][0].shape
    return Arrays(
        stacked["train"],
        torch.tensor(out["train"][1], dtype=torch.int64),
        stacked["test"],
        torch.tensor(out["test"][1], dtype=torch.int64),
        shape=tuple(shape),
        checksums={path.name: digest.hexdigest()},
    )


def _torchvision(name: str, root, mirror, verify_checksums: bool) -> Arrays:
    """KMNIST, QMNIST, EMNIST through torchvision: read from the mirror folder when it holds
    them (torchvision's layout), else downloaded into ``root`` (torchvision checks MD5s)."""
    import torchvision

    from .raw import resolve_mirror

    mirror_dir = resolve_mirror(mirror)
    if name.startswith("emnist-"):
        cls, extra = torchvision.datasets.EMNIST, {"split": name.removeprefix("emnist-")}
        folder = "EMNIST"
    else:
        folder = TORCHVISION[name]
        cls, extra = getattr(torchvision.datasets, folder), {}
    base = mirror_dir if mirror_dir is not None and (mirror_dir / folder).is_dir() else None
    where = str(base if base is not None else Path(root).expanduser().resolve())
    splits = {}
    for split in ("train", "test"):
        try:
            ds = cls(where, train=split == "train", download=base is None, **extra)
        except (RuntimeError, OSError) as err:
            raise DataError(
                f"dataset {name}: torchvision could not read or download it into {where} "
                f"({err}); check the network, or point mirror at a folder holding {folder}/ in "
                "torchvision's layout"
            ) from None
        x = ds.data.reshape(len(ds.data), -1).to(torch.float32) / 255.0
        y = torch.as_tensor(ds.targets).to(torch.int64)
        if y.ndim > 1:  # QMNIST's extended targets: the class is the first column
            y = y[:, 0]
        splits[split] = (x, y)
    raw = Path(where) / folder / "raw"
    sums = {p.name: md5sum(p) for p in sorted(raw.glob("*")) if p.is_file()} if raw.is_dir() else {}
    if verify_checksums and base is not None:  # a mirror's files against torchvision's MD5s
        for url, md5 in getattr(cls, "resources", []) or []:
            got = sums.get(url.rpartition("/")[2])
            if got is not None and md5 and got != md5:
                raise DataError(
                    f"{raw / url.rpartition('/')[2]} has MD5 {got}, torchvision's {folder} file "
                    f"has {md5}: replace it, or turn off checksum verification"
                )
    if name == "emnist-letters":  # labels 1..26: number them from 0
        splits = {s: (x, y - 1) for s, (x, y) in splits.items()}
    side = int(ds.data.shape[-1])
    return Arrays(*splits["train"], *splits["test"], shape=(side, side), checksums=sums)
