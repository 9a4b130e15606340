"""Training configuration: one validated dataclass, the single source of truth for a run.

Importing this module does not import torch, so the workflow can validate configs in a
Snakemake process that has only Snakemake installed (``--use-conda``).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .core import products
from .runtime import MATMUL_PRECISIONS, resolve_device, torch_dtype
from .typecheck import ConfigError, Settings

if TYPE_CHECKING:
    import torch

    from .core.precision import Precision

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


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation from the class source: its inline comment, else the
    comment lines right above it (one line: the command-line help of its flag)."""
    import inspect
    import re

    docs: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            block.append(text.lstrip("# ").strip())
            continue
        match = re.match(r"^(\w+): [^=]+=[^#]*(?:#\s*(.*))?$", text)
        if match and not text.startswith(("def ", "return")):
            doc = match[2] or " ".join(block)
            if doc:
                docs[match[1]] = doc
        block = []
    return docs


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
    from pathlib import Path

    path = Path(name).expanduser()
    try:
        if dataset_kind(name) == "npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as data:
                return int(data["y_train"].max()) + 1
        return sum(1 for p in (path / "train").iterdir() if p.is_dir()) or None
    except (OSError, KeyError, ValueError):
        return None


def settings_digest(values: Any) -> str:
    """A short SHA-256 of JSON-serialisable settings (key order does not matter)."""
    import hashlib
    import json

    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything that determines a training run (model, data, optimiser, integration).

    A :class:`~sanode.typecheck.Settings` block whose values stay as given (an integer for a
    number is not turned into a float: the settings digests do not move)."""

    where: ClassVar[str] = ""  # messages name the key alone
    coerce: ClassVar[bool] = False
    unknown_words: ClassVar[str] = "unknown training setting(s)"

    # letters, mnist, fashion, kmnist, qmnist, emnist-<split>, or the path of an .npz or of
    # an image folder (train/<class>/*, test/<class>/*)
    dataset: str = "letters"
    # model
    a: float = 0.5  # the planted patterns' amplitude: attractors sit at +-a
    gamma: float = 0.4  # initial strength of the local double-well term (trained)
    eig_mean: float = -5.0  # mean of the initial trainable eigenvalues of A
    eig_std: float = 1.0  # spread of the initial trainable eigenvalues
    basis_gain: float = 1.15  # gain of the orthogonal initial eigenvectors
    clip: float | None = 10.0  # bound on |x| in units of a after every step (null: none)
    margin: float = 0.1  # trainable eigenvalues stay this far below the stability bound
    dtype: str = "float32"  # the integration loop's dtype
    # optimisation
    seed: int = 0  # initialisation, shuffling and training-noise seed
    lr: float = 1e-3  # peak learning rate of Adam
    batch_size: int = 200  # training mini-batch size
    epochs: int = 10  # training epochs
    ortho_penalty: float = 0.0  # weight of the eigenvector orthogonality penalty
    # the loss on x(T) (sanode.training.losses): the paper's MSE, cross-entropy over the K pattern
    # overlaps at a temperature, or a per-pixel squared sign hinge at a margin (units of a^2);
    # loss_mse_weight adds the MSE to the other two
    loss: str = "mse"
    loss_temperature: float = 0.05  # temperature of the overlap_ce loss
    loss_margin: float = 0.5  # margin of the sign_margin loss (units of a^2)
    loss_mse_weight: float = 0.0  # weight of the MSE added to the other losses
    # horizon schedule: the last t_train_final_epochs epochs train at t_train_final (None:
    # t_train throughout), e.g. fine-tuning at T = 20 where the model is judged at T = 120
    t_train_final: float | None = None
    t_train_final_epochs: int = 1  # the last epochs trained at t_train_final
    # random end time (STEER, Ghosh et al. 2020): each batch trains at a horizon drawn
    # uniformly from [T - t_train_jitter, T + t_train_jitter] in whole steps dt (0: fixed T)
    t_train_jitter: float = 0.0
    # random translation of the training images (sanode.data.augment): each image of an epoch moves
    # by its own offset, up to augment_shift pixels along each axis (0: off)
    augment_shift: int = 0
    # weight averaging: an exponential moving average of the parameters over optimiser steps
    # (None: off); validated beside the raw weights, the better of the two is the saved model
    ema_decay: float | None = None
    # train on the training and the validation split together (the final fit on all training
    # images once the settings are chosen; validation H then measures the fit, not held-out data)
    train_on_validation: bool = False
    # learning-rate recipe: schedule over all optimiser steps, warm-up fraction, final lr as
    # a fraction of the peak, per-block multipliers, gradient-norm clipping
    lr_schedule: str = "constant"
    lr_warmup: float = 0.0  # warm-up fraction of the lr schedule
    lr_final: float = 0.0  # final lr as a fraction of the peak
    lr_eig_mult: float = 1.0  # lr multiplier of the eigenvalues
    lr_basis_mult: float = 1.0  # lr multiplier of the eigenvectors
    lr_gamma_mult: float = 1.0  # lr multiplier of gamma
    grad_clip_norm: float | None = None  # clip the gradient norm to this (null: no clipping)
    # stop with DivergenceError once an epoch's mean loss exceeds this multiple of the
    # run's first batch loss (None: only non-finite values stop a run)
    divergence_factor: float | None = 10.0
    # collapse: validation H below collapse_fraction x its best (once the best reached
    # collapse_min_best) for collapse_patience epochs in a row; "rollback" restores the best
    # epoch's weights and optimiser, multiplies the lr by collapse_lr_factor and goes on (at
    # most collapse_max_rollbacks times, then stops), "stop" ends the run with CollapseError.
    # collapse_fraction None: no collapse check
    collapse_fraction: float | None = 0.5
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    # the collapse check starts once the best validation H reached this
    collapse_min_best: float = 0.5
    collapse_patience: int = 2  # epochs in a row under the collapse fraction before acting
    collapse_action: str = "rollback"  # rollback (restore the best epoch, lower the lr) or stop
    collapse_lr_factor: float = 0.5  # lr multiplier of a rollback
    collapse_max_rollbacks: int = 2  # rollbacks before the run stops
    # stall: a run whose validation H is still under stall_floor after stall_epochs epochs
    # never started learning (the collapse check only watches falls from a best epoch); it
    # stops with StallError. stall_epochs None: no stall check
    stall_epochs: int | None = None
    stall_floor: float = 0.05  # validation H under which a run counts as stalled
    # a stalled run starts over with the next seed (seed + 1, + 2, ...) up to stall_reseeds
    # times before StallError; the stalled checkpoints are kept beside the run's
    stall_reseeds: int = 0
    # integration (training horizon T, evaluation horizon, step)
    t_train: float = 5.5
    t_eval: float = 12.0  # validation horizon
    dt: float = 0.1  # integration time step
    method: str = "euler"  # fixed-step solver: euler or rk4
    # noise and metrics
    eps_train: float = 0.0
    threshold: float = 0.95  # sign overlap counted as exact (the H bucket)
    # data
    data_root: str = "data"
    # local folder of the MNIST/Fashion-MNIST IDX files (null: env, else download)
    mirror: str | None = None
    per_class: int | None = None  # training images per class (null: all)
    # an image folder's images resized to image_size x image_size (null: as they are, one size)
    image_size: int | None = None
    letters_copies: int = 200  # noisy copies per letter of the synthetic letters set
    verify_checksums: bool = True  # check the raw files' MD5 sums
    # execution
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (null: torch's default)
    eval_batch_size: int = 2000  # batch size of validation and evaluation
    # validation during training stops each item at max|F| < eval_tol (None: all steps)
    eval_tol: float | None = None
    # validate on a balanced seeded subset of this many items per class of the validation
    # split (None: all of it); the final model is still chosen by that subset's H
    val_per_class: int | None = None
    # memory / speed trade-offs (none changes which attractor an item reaches, see README)
    grad_segment: int | str | None = None
    # bfloat16 products only: each Euler step's elementwise work as one compiled kernel
    # (torch.compile; float32 rounding apart the same results; compiles 10-30 s per batch shape)
    fuse_steps: bool = False
    # torch float32 matmul precision: highest, high (TF32), medium
    matmul_precision: str = "highest"
    # products of the training loop (None: the loop dtype; "bfloat16" with a float32 loop;
    # "auto": the fastest measured on this machine, sanode.core.precision)
    train_products: str | None = None
    # products of evaluation (validation, test, analyses of the saved model); None: the loop
    # dtype; "bfloat16x2": two bfloat16 products with A split into a high and a low part
    # (a float32 loop; moves far fewer items between buckets than one bfloat16 product, README)
    eval_products: str | None = None
    # the products' route (torch.mm or oneDNN) and the LAPACK of A's solves (torch or
    # OpenBLAS); auto: the fastest measured on this machine's shapes and threads
    gemm: str = "auto"
    lapack: str = "auto"  # the LAPACK of A's solves (auto: the faster measured here)
    # dtype in which each training step builds A (a linear solve) and its backward pass:
    # float64, or float32 with a float32 loop (half the time; meant for bfloat16 products,
    # whose rounding of A is 10-100x larger; evaluation always builds A in float64)
    coupling_dtype: str = "float64"

    def __post_init__(self) -> None:
        """Every setting checked where it is set; a problem raises :class:`ConfigError` saying
        what was wrong and what fits."""
        self._check_types()
        self._check_sizes()
        self._check_products()
        self._check_levers()
        self._check_schedule()

    def _check_types(self) -> None:
        """Types against the annotations (:meth:`Settings.check_types`) and the words of
        :data:`CHOICES`."""
        self.check_types(self.where)
        for key in (
            "dtype",
            "method",
            "matmul_precision",
            "coupling_dtype",
            "lr_schedule",
            "loss",
            "collapse_action",
            "gemm",
            "lapack",
        ):
            _one_of(key, getattr(self, key), CHOICES[key])
        why = dataset_problem(self.dataset)
        if why is not None:
            raise ConfigError(why)
        if self.image_size is not None and self.image_size < 2:
            raise ConfigError(f"image_size must be >= 2 pixels or null, got {self.image_size}")
        _one_of("device", self.device.split(":")[0], ("auto", "cpu", "cuda"))

    def _check_sizes(self) -> None:
        """The model, data and execution numbers: positive, counts, fractions, the clip, the
        gradient segments."""
        for key in ("a", "lr", "t_train", "t_eval", "dt", "basis_gain", "eig_std"):
            _positive(key, getattr(self, key))
        for key in ("batch_size", "epochs", "letters_copies", "eval_batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key in ("eps_train", "threshold"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{key} must lie in [0, 1], got {value!r}")
        if self.clip is not None and not self.clip > 1:
            raise ConfigError(f"clip must be > 1 (units of a) or null to disable, got {self.clip}")
        if self.ortho_penalty < 0 or self.margin < 0:
            raise ConfigError("ortho_penalty and margin must be >= 0")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"per_class must be a positive integer or null, got {self.per_class}")
        if self.val_per_class is not None and self.val_per_class < 1:
            raise ConfigError(
                f"val_per_class must be a positive integer or null, got {self.val_per_class}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be a positive integer or null, got {self.threads}")
        seg = self.grad_segment
        if not (
            seg is None
            or seg == "auto"
            or (isinstance(seg, int) and not isinstance(seg, bool) and seg >= 1)
        ):
            raise ConfigError(
                "grad_segment must be null (keep every state), 'auto' (sqrt of the step count) "
                f"or a positive step count, got {seg!r}"
            )

    def _check_products(self) -> None:
        """The products (:mod:`sanode.core.products`, the one rule) and the dtype A is built in."""
        for key in ("train_products", "eval_products"):
            value = getattr(self, key)
            why = (
                None
                if value is None
                else products.problem(value, self.dtype, training=key == "train_products")
            )
            if why is not None:
                raise ConfigError(f"{key} {why}")
        if self.coupling_dtype == "float32" and self.dtype != "float32":
            raise ConfigError(
                f"coupling_dtype 'float32' needs dtype 'float32' (got {self.dtype!r}): a float64 "
                "loop builds A in float64; set coupling_dtype: float64"
            )

    def _check_levers(self) -> None:
        """The accuracy levers: the loss, averaging, the collapse check, the horizon schedule, the
        random end time, random shifts."""
        for key in ("loss_temperature", "loss_margin"):
            _positive(key, getattr(self, key))
        if self.loss_mse_weight < 0:
            raise ConfigError(f"loss_mse_weight must be >= 0, got {self.loss_mse_weight!r}")
        for key in ("ema_decay", "collapse_fraction", "collapse_lr_factor"):
            value = getattr(self, key)
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{key} must lie in (0, 1), got {value!r}")
        if self.collapse_patience < 1:
            raise ConfigError(
                f"collapse_patience must be a positive integer, got {self.collapse_patience!r}"
            )
        if not 0.0 <= self.collapse_min_best <= 1.0:
            raise ConfigError(
                f"collapse_min_best must lie in [0, 1], got {self.collapse_min_best!r}"
            )
        if self.stall_epochs is not None and self.stall_epochs < 1:
            raise ConfigError(
                f"stall_epochs must be a positive integer or null, got {self.stall_epochs!r}"
            )
        if not 0.0 <= self.stall_floor <= 1.0:
            raise ConfigError(f"stall_floor must lie in [0, 1], got {self.stall_floor!r}")
        if self.stall_reseeds < 0:
            raise ConfigError(f"stall_reseeds must be >= 0, got {self.stall_reseeds!r}")
        if self.stall_reseeds and self.stall_epochs is None:
            raise ConfigError(
                f"stall_reseeds {self.stall_reseeds} needs the stall check: set stall_epochs "
                "(e.g. 2) or stall_reseeds: 0"
            )
        if self.collapse_max_rollbacks < 0:
            raise ConfigError(
                f"collapse_max_rollbacks must be >= 0, got {self.collapse_max_rollbacks!r}"
            )
        if self.t_train_final_epochs < 1:
            raise ConfigError(
                f"t_train_final_epochs must be a positive integer, got {self.t_train_final_epochs}"
            )
        if self.t_train_final is not None:
            check_horizon("t_train_final", self.t_train_final, self.dt)
            if not 1 <= self.t_train_final_epochs <= self.epochs:
                raise ConfigError(
                    f"t_train_final ({self.t_train_final}) needs t_train_final_epochs in "
                    f"[1, epochs = {self.epochs}], got {self.t_train_final_epochs}: the number "
                    "of last epochs trained at that horizon"
                )
        shortest = min(self.t_train, self.t_train_final or self.t_train)
        jitter = self.t_train_jitter
        if not (isinstance(jitter, (int, float)) and 0.0 <= jitter < shortest):
            raise ConfigError(
                f"t_train_jitter must lie in [0, {shortest}) (the shortest training horizon; "
                f"each batch's is drawn from [T - jitter, T + jitter]), got {jitter!r}"
            )
        shift = self.augment_shift
        if not 0 <= shift <= 4:  # an int: the type check above
            raise ConfigError(
                f"augment_shift must be an integer in [0, 4] (the largest random shift of a "
                f"training image in pixels; 0: off), got {shift!r}"
            )

    def _check_schedule(self) -> None:
        """The optimiser: the lr recipe, clipping, the divergence stop, the seed; the horizons fit
        dt."""
        for key in ("lr_eig_mult", "lr_basis_mult", "lr_gamma_mult"):
            _positive(key, getattr(self, key))
        for key in ("lr_warmup", "lr_final"):
            value = getattr(self, key)
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and 0.0 <= value < 1.0
            ):
                raise ConfigError(f"{key} must lie in [0, 1), got {value!r}")
        if self.lr_schedule == "onecycle" and not self.lr_warmup > 0:
            raise ConfigError(
                "lr_schedule 'onecycle' needs a warm-up: set lr_warmup in (0, 1), e.g. 0.15"
            )
        for key in ("grad_clip_norm", "divergence_factor", "eval_tol"):
            if getattr(self, key) is not None:
                _positive(key, getattr(self, key))
        if self.divergence_factor is not None and self.divergence_factor <= 1:
            raise ConfigError(
                f"divergence_factor must be > 1 or null, got {self.divergence_factor!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for key in ("t_eval", "t_train"):
            check_horizon(key, getattr(self, key), self.dt)

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)

    def precision(self, n: int, **kwargs: Any) -> Precision:
        """The run's :class:`~sanode.core.precision.Precision` for a model of N = ``n`` nodes
        on this config's device: its products, routes and solves, measured where a setting
        says ``auto`` (on the training batch and the evaluation batch; ``kwargs``:
        :func:`sanode.core.precision.resolve`'s ``measure`` and ``cache_dir``)."""
        from .core.precision import resolve

        return resolve(
            self.train_products,
            self.eval_products,
            loop=self.dtype,
            coupling_dtype=self.coupling_dtype,
            gemm=self.gemm,
            lapack=self.lapack,
            n=n,
            batch=self.batch_size,
            eval_batch=self.eval_batch_size,
            device=resolve_device(self.device),
            **kwargs,
        )

    def batch_horizons(self, epoch: int, batches: int) -> list[float]:
        """The horizon of each of the ``batches`` mini-batches of 0-based ``epoch``: the
        epoch's :meth:`horizon`, or with ``t_train_jitter`` a uniform draw from
        [T - jitter, T + jitter] rounded to whole steps dt (at least one step), from a
        generator of its own (the shuffle and the noise of the epoch are unchanged)."""
        t = self.horizon(epoch)
        if not self.t_train_jitter:
            return [t] * batches
        rng = random.Random(self.seed * 100_003 + epoch + 7_919_000)
        draws = [rng.uniform(-1.0, 1.0) for _ in range(batches)]
        steps = [max(1, round((t + self.t_train_jitter * u) / self.dt)) for u in draws]
        return [n * self.dt for n in steps]

    def horizon(self, epoch: int) -> float:
        """The training horizon T of 0-based ``epoch`` under the horizon schedule."""
        if self.t_train_final is not None and epoch >= self.epochs - self.t_train_final_epochs:
            return self.t_train_final
        return self.t_train

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """:meth:`Settings.from_mapping`: an unknown key raises ``ConfigError`` naming the
        allowed keys."""
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Any, where: str = "") -> TrainConfig:  # type: ignore[override]
        """:meth:`Settings.from_mapping`, old setting names (:data:`RENAMED`) read under the
        new ones with one deprecation line each."""
        return super().from_mapping(renamed(values, where), where)

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})


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


def check_horizon(key: str, t: float, dt: float) -> None:
    """The horizon ``t`` must hold at least one step ``dt`` and a whole number of them."""
    if dt > t:
        raise ConfigError(f"dt ({dt}) is larger than {key} ({t}): no step would run; lower dt")
    steps = t / dt
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise ConfigError(
            f"{key} ({t}) is not a whole number of steps dt ({dt}): {steps:.4g} steps; choose a "
            f"dt that divides it, e.g. {t / max(1, round(steps)):.6g}"
        )


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _positive(key: str, value: Any) -> None:
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        raise ConfigError(f"{key} must be a positive number, got {value!r}")
