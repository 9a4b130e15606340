"""The words of the settings: each word setting's choices, the data sets by name, the renamed
settings, and which settings say where a run executes. Torch-free (the workflow imports it in
Snakemake's own process)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .core import products
from .runtime import MATMUL_PRECISIONS
from .typecheck import ConfigError

# the data sets by name (a path to an .npz or an image folder is a data set too:
# sanode.data.custom): the paper's three, and torchvision's other grayscale sets
DATASETS = ("letters", "mnist", "fashion")
TORCHVISION = {"kmnist": "KMNIST", "qmnist": "QMNIST"}
EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
MIRROR_ENV = "SANODE_DATA_MIRROR"  # the mirror folder of the MNIST/Fashion-MNIST IDX files
DTYPES = ("float32", "float64")
# the (B, N) @ (N, N) products of the loop (sanode.core.products); None: the loop dtype itself.
# Evaluation may also split A into two bfloat16 parts: two products, A's rounding error gone
# (auto: bfloat16 where the device has native bfloat16 products, else the loop dtype)
TRAIN_PRODUCTS = (*products.TRAINING_NAMES, products.AUTO)
EVAL_PRODUCTS = (*products.NAMES, products.AUTO)
# the products' route (torch.mm or oneDNN) and the LAPACK of A's solves; auto: measured
# (sanode.core.precision)
GEMM_ROUTES = ("auto", "torch", "onednn")
LAPACK_ROUTES = ("auto", "torch", "openblas")
# old setting names still read (one deprecation line naming the new key)
RENAMED = {"matmul_dtype": "train_products", "eval_matmul_dtype": "eval_products"}
LR_SCHEDULES = ("constant", "cosine", "onecycle")
# the loss on the final state x(T) (sanode.training.losses)
LOSSES = ("mse", "overlap_ce", "sign_margin")
# what a detected collapse does: restore the best epoch and lower the lr, or stop
COLLAPSE_ACTIONS = ("rollback", "stop")
METHODS = ("euler", "rk4")  # the fixed-step solvers (sanode.core.integrate.SOLVERS)
# the dtype each training step builds A in (float32: with a float32 loop only)
COUPLING_DTYPES = ("float64", "float32")
# the TrainConfig settings that take one of a few words: validated here, and the choices of
# their command-line flags (sanode.cli)
CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": DTYPES,
    "method": METHODS,
    "matmul_precision": MATMUL_PRECISIONS,
    "train_products": TRAIN_PRODUCTS,
    "eval_products": EVAL_PRODUCTS,
    "gemm": GEMM_ROUTES,
    "lapack": LAPACK_ROUTES,
    "coupling_dtype": COUPLING_DTYPES,
    "lr_schedule": LR_SCHEDULES,
    "loss": LOSSES,
    "collapse_action": COLLAPSE_ACTIONS,
}


# Settings that say where and how a run executes, not what it computes: a run may resume
# with other values, and they are left out of the settings digests that decide reruns.
EXECUTION_KEYS = frozenset(
    {
        "device",
        "threads",
        "eval_batch_size",
        "data_root",
        "mirror",
        "verify_checksums",
        "grad_segment",
        "fuse_steps",
        "gemm",
        "lapack",
    }
)
# Where a run executed (its machine's folders, device, threads; a subset of EXECUTION_KEYS): a
# recipe read back from a checkpoint leaves them to the machine that trains it again.
PLACE_KEYS = frozenset({"data_root", "mirror", "device", "threads"})


def named_sets() -> list[str]:
    """Every data set ``dataset`` takes by name."""
    return [*DATASETS, *TORCHVISION, *(f"emnist-{s}" for s in EMNIST_SPLITS)]


def dataset_kind(name: str) -> str:
    """``"letters"``, ``"idx"`` (MNIST, Fashion-MNIST), ``"torchvision"``, ``"npz"`` or
    ``"folder"`` (any other value is a path)."""
    if name == "letters":
        return "letters"
    if name in ("mnist", "fashion"):
        return "idx"
    if name in TORCHVISION or name.startswith("emnist-"):
        return "torchvision"
    return "npz" if name.lower().endswith(".npz") else "folder"


def dataset_problem(name: object) -> str | None:
    """Why ``name`` cannot name a data set (None: it can; a path is checked when it is read)."""
    if not isinstance(name, str) or not name.strip():
        return f"dataset must be a name ({', '.join(named_sets())}) or a path, got {name!r}"
    if name.startswith("emnist-") and name.removeprefix("emnist-") not in EMNIST_SPLITS:
        return (
            f"dataset {name!r}: EMNIST has the splits {list(EMNIST_SPLITS)}; e.g. emnist-balanced"
        )
    return None


# the classes of the named data sets (torchvision's EMNIST splits differ)
NAMED_CLASSES = {
    "letters": 5,
    "mnist": 10,
    "fashion": 10,
    "kmnist": 10,
    "qmnist": 10,
    "emnist-byclass": 62,
    "emnist-bymerge": 47,
    "emnist-balanced": 47,
    "emnist-letters": 26,
    "emnist-digits": 10,
    "emnist-mnist": 10,
}


def dataset_classes(name: str) -> int | None:
    """K of a data set without loading its images: the named sets' known counts, an .npz's
    largest training label + 1, an image folder's class folders; None where that cannot be
    read (the data set's own check then says why)."""
    if name in NAMED_CLASSES:
        return NAMED_CLASSES[name]

    path = Path(name).expanduser()
    try:
        if dataset_kind(name) == "npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as data:
                return int(data["y_train"].max()) + 1
        return sum(1 for p in (path / "train").iterdir() if p.is_dir()) or None
    except (OSError, KeyError, ValueError):
        return None


_warned: set[str] = set()


def renamed(values: Any, where: str = "", *, warn: bool = True) -> Any:
    """``values`` with the old names of :data:`RENAMED` replaced by the new ones (``warn``:
    one deprecation line per old name and process, on the ``sanode`` logger; off for results
    written before the rename, read back as they are); both names at once is a
    :class:`ConfigError`."""
    if not isinstance(values, dict) or not RENAMED.keys() & values.keys():
        return values
    out = dict(values)
    prefix = f"{where}." if where else ""
    for old, new in RENAMED.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(
                f"{prefix}{old} and {prefix}{new} are one setting ({old} is its old name): "
                f"keep {new} only"
            )
        out[new] = out.pop(old)
        if warn and old not in _warned:
            _warned.add(old)
            logging.getLogger("sanode").warning(
                "sanode: the setting %r is deprecated; it was read as %r (rename it)", old, new
            )
    return out
