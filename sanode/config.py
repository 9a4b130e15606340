"""Training configuration: one validated dataclass, the single source of truth for a run.

Importing this module does not import torch, so the workflow can validate configs in a
Snakemake process that has only Snakemake installed (``--use-conda``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

# the settings' words live in sanode.choices; re-exported here, where they were
from .choices import (
    CHOICES as CHOICES,
)
from .choices import (
    COLLAPSE_ACTIONS as COLLAPSE_ACTIONS,
)
from .choices import (
    COUPLING_DTYPES as COUPLING_DTYPES,
)
from .choices import (
    DATASETS as DATASETS,
)
from .choices import (
    DTYPES as DTYPES,
)
from .choices import (
    EMNIST_SPLITS as EMNIST_SPLITS,
)
from .choices import (
    EVAL_PRODUCTS as EVAL_PRODUCTS,
)
from .choices import (
    EXECUTION_KEYS as EXECUTION_KEYS,
)
from .choices import (
    GEMM_ROUTES as GEMM_ROUTES,
)
from .choices import (
    LAPACK_ROUTES as LAPACK_ROUTES,
)
from .choices import (
    LOSSES as LOSSES,
)
from .choices import (
    LR_SCHEDULES as LR_SCHEDULES,
)
from .choices import (
    METHODS as METHODS,
)
from .choices import (
    MIRROR_ENV as MIRROR_ENV,
)
from .choices import (
    NAMED_CLASSES as NAMED_CLASSES,
)
from .choices import (
    PLACE_KEYS as PLACE_KEYS,
)
from .choices import (
    RENAMED as RENAMED,
)
from .choices import (
    TORCHVISION as TORCHVISION,
)
from .choices import (
    TRAIN_PRODUCTS as TRAIN_PRODUCTS,
)
from .choices import (
    dataset_classes as dataset_classes,
)
from .choices import (
    dataset_kind as dataset_kind,
)
from .choices import (
    dataset_problem as dataset_problem,
)
from .choices import (
    named_sets as named_sets,
)
from .choices import (
    renamed as renamed,
)
from .config_checks import (
    check_horizon as check_horizon,
)
from .config_checks import (
    check_levers,
    check_products,
    check_schedule,
    check_sizes,
    check_words,
)
from .runtime import MATMUL_PRECISIONS as MATMUL_PRECISIONS
from .runtime import resolve_device, torch_dtype
from .typecheck import ConfigError as ConfigError
from .typecheck import Settings
from .typecheck import field_docs as field_docs

if TYPE_CHECKING:
    import torch

    from .core.precision import Precision


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
        self.check_types(self.where)
        for check in (check_words, check_sizes, check_products, check_levers, check_schedule):
            check(self)

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
