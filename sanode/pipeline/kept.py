"""Work a stopped job keeps: the finished pieces of a long job (an evaluation's test cells, a
baseline's fit) stored under a digest of everything they depend on, so a rerun, on this
machine or on another one they were carried to (``make carry``), reads them back instead of
computing them again. The folders are :func:`sanode.pipeline.layout.scores_dir`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import torch


def tensor_digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A digest of tensors' names, dtypes, shapes and bytes (a model's state dict, a data
    split): equal exactly when every tensor is bit for bit the same."""
    h = hashlib.sha256()
    for name, value in named:
        h.update(f"{name} {value.dtype} {tuple(value.shape)}".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def key(**parts: Any) -> str:
    """The file name (without suffix) of one kept piece: a digest of ``parts`` (JSON-able
    settings and :func:`tensor_digest` strings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
