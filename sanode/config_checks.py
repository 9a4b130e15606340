"""The checks of a :class:`~sanode.config.TrainConfig`: every setting where it is set, each
problem a :class:`~sanode.typecheck.ConfigError` saying what was wrong and what fits."""

from __future__ import annotations

import math
from typing import Any

from .choices import CHOICES, dataset_problem
from .core import products
from .typecheck import ConfigError


def check_words(cfg: Any) -> None:
    """The word settings against :data:`~sanode.choices.CHOICES`, the data set's name, the
    image size, the device."""
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
        _one_of(key, getattr(cfg, key), CHOICES[key])
    why = dataset_problem(cfg.dataset)
    if why is not None:
        raise ConfigError(why)
    if cfg.image_size is not None and cfg.image_size < 2:
        raise ConfigError(f"image_size must be >= 2 pixels or null, got {cfg.image_size}")
    _one_of("device", cfg.device.split(":")[0], ("auto", "cpu", "cuda"))


def check_sizes(cfg: Any) -> None:
    """The model, data and execution numbers: positive, counts, fractions, the clip, the
    gradient segments."""
    for key in ("a", "lr", "t_train", "t_eval", "dt", "basis_gain", "eig_std"):
        _positive(key, getattr(cfg, key))
    for key in ("batch_size", "epochs", "letters_copies", "eval_batch_size"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    for key in ("eps_train", "threshold"):
        value = getattr(cfg, key)
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ConfigError(f"{key} must lie in [0, 1], got {value!r}")
    if cfg.clip is not None and not cfg.clip > 1:
        raise ConfigError(f"clip must be > 1 (units of a) or null to disable, got {cfg.clip}")
    if cfg.ortho_penalty < 0 or cfg.margin < 0:
        raise ConfigError("ortho_penalty and margin must be >= 0")
    if cfg.per_class is not None and cfg.per_class < 1:
        raise ConfigError(f"per_class must be a positive integer or null, got {cfg.per_class}")
    if cfg.val_per_class is not None and cfg.val_per_class < 1:
        raise ConfigError(
            f"val_per_class must be a positive integer or null, got {cfg.val_per_class}"
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be a positive integer or null, got {cfg.threads}")
    seg = cfg.grad_segment
    if not (
        seg is None
        or seg == "auto"
        or (isinstance(seg, int) and not isinstance(seg, bool) and seg >= 1)
    ):
        raise ConfigError(
            "grad_segment must be null (keep every state), 'auto' (sqrt of the step count) "
            f"or a positive step count, got {seg!r}"
        )


def check_products(cfg: Any) -> None:
    """The products (:mod:`sanode.core.products`, the one rule) and the dtype A is built in."""
    for key in ("train_products", "eval_products"):
        value = getattr(cfg, key)
        why = (
            None
            if value is None
            else products.problem(value, cfg.dtype, training=key == "train_products")
        )
        if why is not None:
            raise ConfigError(f"{key} {why}")
    if cfg.coupling_dtype == "float32" and cfg.dtype != "float32":
        raise ConfigError(
            f"coupling_dtype 'float32' needs dtype 'float32' (got {cfg.dtype!r}): a float64 "
            "loop builds A in float64; set coupling_dtype: float64"
        )


def check_levers(cfg: Any) -> None:
    """The accuracy levers: the loss, averaging, the collapse check, the horizon schedule, the
    random end time, random shifts."""
    for key in ("loss_temperature", "loss_margin"):
        _positive(key, getattr(cfg, key))
    if cfg.loss_mse_weight < 0:
        raise ConfigError(f"loss_mse_weight must be >= 0, got {cfg.loss_mse_weight!r}")
    for key in ("ema_decay", "collapse_fraction", "collapse_lr_factor"):
        value = getattr(cfg, key)
        if value is not None and not 0.0 < value < 1.0:
            raise ConfigError(f"{key} must lie in (0, 1), got {value!r}")
    if cfg.collapse_patience < 1:
        raise ConfigError(
            f"collapse_patience must be a positive integer, got {cfg.collapse_patience!r}"
        )
    if not 0.0 <= cfg.collapse_min_best <= 1.0:
        raise ConfigError(f"collapse_min_best must lie in [0, 1], got {cfg.collapse_min_best!r}")
    if cfg.stall_epochs is not None and cfg.stall_epochs < 1:
        raise ConfigError(
            f"stall_epochs must be a positive integer or null, got {cfg.stall_epochs!r}"
        )
    if not 0.0 <= cfg.stall_floor <= 1.0:
        raise ConfigError(f"stall_floor must lie in [0, 1], got {cfg.stall_floor!r}")
    if cfg.stall_reseeds < 0:
        raise ConfigError(f"stall_reseeds must be >= 0, got {cfg.stall_reseeds!r}")
    if cfg.stall_reseeds and cfg.stall_epochs is None:
        raise ConfigError(
            f"stall_reseeds {cfg.stall_reseeds} needs the stall check: set stall_epochs "
            "(e.g. 2) or stall_reseeds: 0"
        )
    if cfg.collapse_max_rollbacks < 0:
        raise ConfigError(
            f"collapse_max_rollbacks must be >= 0, got {cfg.collapse_max_rollbacks!r}"
        )
    if cfg.t_train_final_epochs < 1:
        raise ConfigError(
            f"t_train_final_epochs must be a positive integer, got {cfg.t_train_final_epochs}"
        )
    if cfg.t_train_final is not None:
        check_horizon("t_train_final", cfg.t_train_final, cfg.dt)
        if not 1 <= cfg.t_train_final_epochs <= cfg.epochs:
            raise ConfigError(
                f"t_train_final ({cfg.t_train_final}) needs t_train_final_epochs in "
                f"[1, epochs = {cfg.epochs}], got {cfg.t_train_final_epochs}: the number "
                "of last epochs trained at that horizon"
            )
    shortest = min(cfg.t_train, cfg.t_train_final or cfg.t_train)
    jitter = cfg.t_train_jitter
    if not (isinstance(jitter, (int, float)) and 0.0 <= jitter < shortest):
        raise ConfigError(
            f"t_train_jitter must lie in [0, {shortest}) (the shortest training horizon; "
            f"each batch's is drawn from [T - jitter, T + jitter]), got {jitter!r}"
        )
    shift = cfg.augment_shift
    if not 0 <= shift <= 4:  # an int: the type check above
        raise ConfigError(
            f"augment_shift must be an integer in [0, 4] (the largest random shift of a "
            f"training image in pixels; 0: off), got {shift!r}"
        )


def check_schedule(cfg: Any) -> None:
    """The optimiser: the lr recipe, clipping, the divergence stop, the seed; the horizons fit
    dt."""
    for key in ("lr_eig_mult", "lr_basis_mult", "lr_gamma_mult"):
        _positive(key, getattr(cfg, key))
    for key in ("lr_warmup", "lr_final"):
        value = getattr(cfg, key)
        if not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
        ):
            raise ConfigError(f"{key} must lie in [0, 1), got {value!r}")
    if cfg.lr_schedule == "onecycle" and not cfg.lr_warmup > 0:
        raise ConfigError(
            "lr_schedule 'onecycle' needs a warm-up: set lr_warmup in (0, 1), e.g. 0.15"
        )
    for key in ("grad_clip_norm", "divergence_factor", "eval_tol"):
        if getattr(cfg, key) is not None:
            _positive(key, getattr(cfg, key))
    if cfg.divergence_factor is not None and cfg.divergence_factor <= 1:
        raise ConfigError(f"divergence_factor must be > 1 or null, got {cfg.divergence_factor!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    for key in ("t_eval", "t_train"):
        check_horizon(key, getattr(cfg, key), cfg.dt)


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
