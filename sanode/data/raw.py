"""MNIST and Fashion-MNIST through torchvision: download, or copy from a local mirror folder.

A mirror is a folder laid out like torchvision's raw folders (``MNIST/raw/*-ubyte[.gz]`` and
``FashionMNIST/raw/*-ubyte[.gz]``), given as an argument or through the environment variable
``SANODE_DATA_MIRROR``. Files are copied (and decompressed) into ``<root>/<Folder>/raw``,
checked for a well-formed IDX layout and, unless disabled, against the canonical MD5 sums.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

import torch

from ..config import MIRROR_ENV

TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion": "FashionMNIST"}
RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the decompressed, official files.
CANONICAL_MD5 = {
    "MNIST": {
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    },
    "FashionMNIST": {
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    },
}


class DataError(RuntimeError):
    """A data set could not be found, fetched or read; the message says how to fix it."""


def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    return {"mnist": tvd.MNIST, "fashion": tvd.FashionMNIST}[name]


def _check_name(name: str) -> str:
    if name not in TORCHVISION_FOLDER:
        raise DataError(
            f"unknown image data set {name!r}; choose one of {sorted(TORCHVISION_FOLDER)}"
        )
    return TORCHVISION_FOLDER[name]


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror folder: the argument, else ``$SANODE_DATA_MIRROR``, else ``None``."""
    value = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        source = "the mirror argument" if mirror else f"${MIRROR_ENV}"
        raise DataError(
            f"mirror folder {path} (from {source}) does not exist; point it at a folder holding "
            "MNIST/raw and FashionMNIST/raw, or unset it to download"
        )
    return path


def md5sum(path: Path) -> str:
    """MD5 of a file, cached on (path, size, mtime) so repeated checks cost nothing."""
    st = path.stat()
    return _md5(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def sha256sum(path: str | os.PathLike) -> str:
    """SHA-256 of a file (the prepared caches, a user's .npz)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_idx_header(path: Path) -> tuple[int, ...]:
    """Dimensions of an unsigned-byte IDX file; ``DataError`` if it is malformed or truncated."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DataError(
                    f"{path} is not an unsigned-byte IDX file (bad magic number {head.hex()!r}); "
                    "delete it so that it is fetched again"
                )
            ndim = head[3]
            dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
    except struct.error:
        raise DataError(f"{path} is truncated inside its IDX header; delete it") from None
    size = 1
    for d in dims:
        size *= d
    actual = path.stat().st_size
    if actual != 4 + 4 * ndim + size:
        raise DataError(
            f"{path} is corrupt: its IDX header promises {dims} bytes of data "
            f"({4 + 4 * ndim + size} bytes in all) but the file has {actual}; delete it so "
            "that it is fetched again"
        )
    return dims


def _find_in_mirror(mirror: Path, folder: str, filename: str) -> Path | None:
    for base in (mirror / folder / "raw", mirror / folder, mirror):
        for candidate in (base / filename, base / (filename + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _copy_from_mirror(source: Path, target: Path) -> None:
    """Copy (decompressing ``.gz``) atomically: a crash never leaves a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            if source.suffix == ".gz":
                try:
                    with gzip.open(source, "rb") as src:
                        shutil.copyfileobj(src, out)
                except (OSError, EOFError) as err:
                    raise DataError(
                        f"mirror file {source} is not a readable gzip file ({err}); replace it"
                    ) from None
            else:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_raw(
    name: str,
    root: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
    verify_checksums: bool = True,
) -> dict[str, str]:
    """Make sure ``<root>/<Folder>/raw`` holds the four decompressed IDX files of ``name``.

    Missing files come from the mirror (argument or ``$SANODE_DATA_MIRROR``) if one is set,
    else from torchvision's download. Every file is checked for a well-formed IDX layout and,
    with ``verify_checksums``, against the canonical MD5.

    Returns:
        ``{filename: md5}`` of the four files, for run records.
    """
    folder = _check_name(name)
    raw = Path(root).expanduser().resolve() / folder / "raw"
    files = [f for pair in RAW_FILES.values() for f in pair]
    missing = [f for f in files if not (raw / f).is_file()]
    if missing:
        mirror_dir = resolve_mirror(mirror)
        if mirror_dir is not None:
            for f in missing:
                src = _find_in_mirror(mirror_dir, folder, f)
                if src is None:
                    raise DataError(
                        f"{f} of {folder} is not in the mirror {mirror_dir} (looked for "
                        f"{folder}/raw/{f}[.gz]); add it there or point the mirror elsewhere"
                    )
                _copy_from_mirror(src, raw / f)
        elif download:
            cls = _torchvision_class(name)
            try:
                cls(str(raw.parent.parent), train=True, download=True)
                cls(str(raw.parent.parent), train=False, download=True)
            except Exception as err:  # torchvision raises URLError, RuntimeError, OSError...
                raise DataError(
                    f"could not download {folder} with torchvision ({type(err).__name__}: {err}). "
                    f"Without network access, point a mirror folder at the IDX files: "
                    f"--mirror DIR or {MIRROR_ENV}=DIR (layout {folder}/raw/*-ubyte[.gz])"
                ) from None
        else:
            raise DataError(
                f"{folder} files {missing} are missing under {raw} and downloading is disabled; "
                f"enable download or set a mirror folder ({MIRROR_ENV}=DIR)"
            )
    sums = {}
    for f in files:
        path = raw / f
        read_idx_header(path)
        sums[f] = md5sum(path)
        expected = CANONICAL_MD5[folder][f]
        if verify_checksums and sums[f] != expected:
            raise DataError(
                f"{path} has MD5 {sums[f]}, the official {folder} file has {expected}: it is "
                "corrupt or not the official release. Delete it to fetch it again, or turn off "
                "checksum verification (--no-verify-checksums) for a deliberate custom copy"
            )
    return sums


def balanced_subset(labels: torch.Tensor, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` items of every class, drawn without replacement (seeded), sorted."""
    gen = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise DataError(
                f"class {c} has only {len(idx)} items, fewer than per_class={per_class}; "
                "lower per_class"
            )
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(picks).sort().values


def load_images(
    name: str,
    split: str,
    root: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
    verify_checksums: bool = True,
    per_class: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of MNIST (``"mnist"``) or Fashion-MNIST (``"fashion"``), split ``train``/``test``.

    Returns:
        x of shape (M, 784), float32 in [0, 1] (uint8 / 255), flattened row-major; and
        y of shape (M,), int64 labels. ``per_class`` keeps a balanced seeded subset.
    """
    if split not in RAW_FILES:
        raise DataError(f"unknown split {split!r}; choose one of {sorted(RAW_FILES)}")
    prepare_raw(name, root, mirror=mirror, download=download, verify_checksums=verify_checksums)
    ds = _torchvision_class(name)(
        str(Path(root).expanduser().resolve()), train=split == "train", download=False
    )
    x = ds.data.reshape(len(ds.data), -1).to(torch.float32) / 255.0
    y = ds.targets.to(torch.int64)
    if len(x) != len(y):
        raise DataError(
            f"{name} {split}: {len(x)} images but {len(y)} labels; delete the raw files"
        )
    if per_class is not None:
        keep = balanced_subset(y, per_class, seed=seed)
        x, y = x[keep], y[keep]
    return x, y
