"""Atomic file writes that fail cleanly on a full disk.

Every checkpoint, table and record the project writes goes through :func:`write_atomic`: the
new content is written to a temporary file beside the target and renamed over it, so a crash
or a full disk leaves the previous file intact. A write that runs out of space raises
:class:`DiskFullError`, whose one-line message names the file, the free space on its disk and
how to go on.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# errors that mean "the disk (or the quota) is full"
_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """A write ran out of space; the message names the file, the free space and the fix."""

    def __str__(self) -> str:
        return str(self.strerror)


def free_space(folder: str | os.PathLike) -> str:
    """Free space on the disk that holds ``folder``, e.g. ``"12.5 MiB"`` (``"unknown"`` when
    it cannot be read)."""
    try:
        free: float = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.1f} {unit}" if unit != "B" else f"{free} B"
        free /= 1024
    return "unknown"  # not reached


def write_atomic(
    path: str | os.PathLike, write: Callable[[Path], Any], *, what: str = "file"
) -> None:
    """Write ``path`` by calling ``write(tmp)`` on a temporary file in the same folder, then
    renaming it over ``path``: the old file stays whole until the new one is complete.

    Raises:
        DiskFullError: no space left (or quota exceeded) while writing; the temporary file is
            removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save wraps its writer's OSError
        if _is_full(err):
            raise _full_error(path, what) from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> None:
    """:func:`write_atomic` of a text file."""
    write_atomic(path, lambda tmp: tmp.write_text(text), what=what)


def write_json(
    path: str | os.PathLike, value: Any, *, what: str = "record", indent: int = 2
) -> None:
    """:func:`write_atomic` of ``value`` as JSON."""
    write_text(path, json.dumps(value, indent=indent), what=what)


def write_parquet(path: str | os.PathLike, frame, *, what: str = "table") -> None:
    """:func:`write_atomic` of a pandas DataFrame as Parquet (no index)."""
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False), what=what)


def write_torch(path: str | os.PathLike, value: Any, *, what: str = "file") -> None:
    """:func:`write_atomic` of ``torch.save(value)``, through a Python file: torch keeps that
    file's OSError (ENOSPC) as its error's context, while its own file writer reports a full
    disk as "basic_ios::clear: iostream error"."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(value, f)

    write_atomic(path, write, what=what)


# the version of the payloads of save_checkpoint (checkpoints, prepared data sets)
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temp file + rename): a crash never leaves a torn file,
    and a full disk raises :class:`sanode.files.DiskFullError` with the previous checkpoint
    intact."""
    write_torch(path, {"format": FORMAT_VERSION, **payload}, what="checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; clear errors for missing or foreign files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train a model first")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        what = describe_file(path)
        if what.startswith("a zip archive"):  # torch's own reason says what is wrong in it
            what += f" ({_first_sentence(err)})"
        raise ValueError(
            f"{path} is not a sanode checkpoint: it is {what}; pass a .pt file written by "
            "sanode train"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a sanode checkpoint of format {FORMAT_VERSION}; "
            "was it written by another program or version?"
        )
    return payload


# the first bytes of common files and what they are
_MAGIC = (
    (b"PK\x03\x04", "a zip archive (a torch file, or another zip) that torch cannot load"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x80", "a Python pickle (sanode checkpoints are torch zip files)"),
)


def describe_file(path: str | os.PathLike) -> str:
    """What a file looks like from its first bytes: ``"an empty file"``, ``"a text file
    (starts 'hello')"``, ``"a PNG image"``, or its size in bytes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if size == 0:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"{what}, {size:,} bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data of {size:,} bytes"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"a text file of {size:,} bytes (starts {first!r})"


def _first_sentence(err: BaseException) -> str:
    """The first sentence of an error's first line (torch.load's refusals run to paragraphs
    with advice that does not apply to a file that is no checkpoint)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    return first.split(". ")[0].rstrip(".")


def _is_full(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is a full disk or quota."""
    seen, current = 0, err  # type: tuple[int, BaseException | None]
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in _FULL:
            return True
        if "No space left on device" in str(current) or "Disk quota exceeded" in str(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _full_error(path: Path, what: str) -> DiskFullError:
    return DiskFullError(
        errno.ENOSPC,
        f"cannot write the {what} {path}: no space left on device ({free_space(path.parent)} "
        f"free on its disk); the previous {path.name} is intact. Free some space (or point the "
        "output folder elsewhere) and rerun the same command: finished work is kept",
    )
