"""A trained SA-nODE as a classifier of one's own images: flow each image to its attractor.

:class:`AttractorClassifier` wraps a model with its evaluation horizon: (B, N) images in
[0, 1] -> (B, K) sign overlaps of the final state with each planted pattern (the class is
the argmax, the bucket follows from the overlap). It is what the pipeline logs to MLflow with
``mlflow.pytorch.log_model`` and registers as ``sanode-<study>``;
:func:`load_classifier` opens it from a checkpoint file or a ``models:/`` URI.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..core.metrics import bucket_of, nearest_attractor
from ..core.model import SANode
from ..training.evaluate import final_states

BUCKETS = ("exact", "partial", "wrong")


class ClassifyError(ValueError):
    """An input cannot be classified; the message names the file and what to do."""


class AttractorClassifier(nn.Module):
    """images (B, N) in [0, 1] -> sign overlaps (B, K) of x(t_eval) with each pattern."""

    def __init__(
        self,
        model: SANode,
        *,
        t_eval: float,
        dt: float,
        method: str = "euler",
        threshold: float = 0.95,
        tol: float | None = 1e-4,
        dataset: str = "mnist",
    ):
        super().__init__()
        self.model = model.eval()
        self.dataset = dataset  # the data set it was trained on (its test images, its side)
        self.t_eval, self.dt, self.method = float(t_eval), float(dt), method
        self.threshold, self.tol = float(threshold), tol

    @classmethod
    def from_config(cls, model: SANode, cfg: TrainConfig, t_eval: float | None = None):
        return cls(
            model,
            t_eval=cfg.t_eval if t_eval is None else t_eval,
            dt=cfg.dt,
            method=cfg.method,
            threshold=cfg.threshold,
            tol=cfg.eval_tol,
            dataset=cfg.dataset,
        )

    @property
    def num_nodes(self) -> int:
        return self.model.patterns.shape[1]

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """x(t_eval) (B, N) from images (B, N) (early exit on a fixed point with ``tol``)."""
        with torch.no_grad():
            return final_states(
                self.model,
                x.to(torch.float32),
                t_end=self.t_eval,
                dt=self.dt,
                method=self.method,
                tol=self.tol,
            )

    def overlaps(self, final: torch.Tensor) -> torch.Tensor:
        """(B, K) fraction of pixels whose sign matches each planted pattern."""
        patterns = self.model.patterns.detach().cpu().to(final.dtype)
        return (
            (torch.sign(final).unsqueeze(1) == torch.sign(patterns).unsqueeze(0))
            .to(torch.float32)
            .mean(dim=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.overlaps(self.final(x))


@dataclass(frozen=True)
class Classification:
    """One row per image: the class whose attractor the image reached (largest sign overlap),
    that overlap, its bucket (exact: every pixel on the pattern; partial: >= threshold;
    wrong: below), and the nearest attractor by the inner product x . phi_k."""

    predicted: list[int]
    overlap: list[float]
    bucket: list[str]
    nearest: list[int]
    final: torch.Tensor  # (B, N)


def classify(classifier: AttractorClassifier, x: torch.Tensor) -> Classification:
    final = classifier.final(x)
    q = classifier.overlaps(final)
    best, predicted = q.max(dim=1)
    nearest = nearest_attractor(final, classifier.model.patterns.detach().cpu())
    buckets = bucket_of(best.to(torch.float64), classifier.threshold)
    return Classification(
        predicted=predicted.tolist(),
        overlap=best.tolist(),
        bucket=[BUCKETS[b] for b in buckets.tolist()],
        nearest=nearest.tolist(),
        final=final,
    )


def load_classifier(spec: str, *, t_eval: float | None = None) -> AttractorClassifier:
    """A checkpoint file (``sanode train`` / the pipeline's ``best/eps_train=<eps>.pt``) or an
    MLflow model URI (``models:/sanode-mnist/latest``, ``runs:/<id>/model``)."""
    if "://" not in spec and ":/" not in spec:
        from ..training.checkpoint import load_model

        model, cfg, _ = load_model(spec)
        return AttractorClassifier.from_config(model, cfg, t_eval)
    import mlflow.pytorch

    try:
        loaded = mlflow.pytorch.load_model(spec, map_location="cpu")
    except Exception as err:  # MlflowException, OSError: one line with the URI
        raise ClassifyError(f"cannot load the MLflow model {spec}: {err}") from None
    if not isinstance(loaded, AttractorClassifier):
        raise ClassifyError(f"{spec} is not a sanode classifier (got {type(loaded).__name__})")
    if t_eval is not None:
        loaded.t_eval = float(t_eval)
    return loaded


def read_images(
    paths: list[str | os.PathLike],
    num_nodes: int,
    *,
    invert: bool | None = None,
    notes: list[str] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Images (B, N) in [0, 1] and a name per row from PNG/JPEG files (grey, area-resized to
    the model's square side) and ``.npy`` arrays ((N,), (B, N), (H, W) or (B, H, W); values
    above 1 are read as 0-255). The model expects bright ink on a dark ground (as MNIST):
    ``invert`` None inverts a picture whose border is light (a scan of dark ink on paper),
    True / False always / never inverts pictures (arrays are taken as they are). ``notes``
    receives one line per picture that was changed to fit (converted to grayscale, resized,
    inverted), with a warning where its aspect ratio or size is far from the model's square
    side (the classifier then sees a squashed or blurred image)."""
    import numpy as np

    side = math.isqrt(num_nodes)
    rows, names = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise ClassifyError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False).astype(np.float32)
            except (ValueError, OSError) as err:
                raise ClassifyError(f"{path}: not a readable .npy array ({err})") from None
            if array.size % num_nodes:
                raise ClassifyError(
                    f"{path}: shape {array.shape} does not hold images of {num_nodes} pixels "
                    f"({side}x{side}); save flattened (B, {num_nodes}) or (B, {side}, {side})"
                )
            array = array.reshape(-1, num_nodes)
            if array.max(initial=0.0) > 1.0:
                array = array / 255.0
            rows.append(torch.from_numpy(array))
            names += (
                [f"{path.name}[{i}]" for i in range(len(array))] if len(array) > 1 else [path.name]
            )
            continue
        from PIL import Image, UnidentifiedImageError

        if side * side != num_nodes:
            raise ClassifyError(
                f"{path}: this model's N = {num_nodes} is no square image; pass its inputs as "
                f".npy arrays of {num_nodes} values"
            )
        try:
            with Image.open(path) as image:
                mode, (width, height) = image.mode, image.size
                grey = image.convert("L").resize((side, side), Image.Resampling.BOX)
        except (UnidentifiedImageError, OSError) as err:
            raise ClassifyError(f"{path}: not an image PIL can read ({err})") from None
        pixels = np.asarray(grey, dtype=np.float32) / 255.0
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        inverted = bool(invert or (invert is None and float(np.median(border)) > 0.5))
        if inverted:
            pixels = 1.0 - pixels
        if notes is not None:
            notes += _picture_notes(path, mode, width, height, side, inverted)
        values = torch.from_numpy(pixels).reshape(1, -1)
        rows.append(values)
        names.append(path.name)
    if not rows:
        raise ClassifyError("no images given; pass image files, .npy arrays or --mnist-test N")
    x = torch.cat(rows).clamp_(0.0, 1.0)
    return x, names


def _picture_notes(
    path: Path, mode: str, width: int, height: int, side: int, inverted: bool
) -> list[str]:
    """What was done to a picture to fit a ``side`` x ``side`` model, and a warning where its
    shape or size is far from that (aspect ratio over 1.25, or a side under half or over 8x
    the model's)."""
    done = []
    if mode not in ("L", "1", "I;16", "I", "F"):
        done.append(f"converted {mode} to grayscale")
    if (width, height) != (side, side):
        done.append(f"resized from {width}x{height} to {side}x{side}")
    if inverted:
        done.append("inverted (a light background: the model expects bright ink on dark)")
    lines = [f"{path.name}: {', '.join(done)}"] if done else []
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > 1.25:
        lines.append(
            f"{path.name}: warning: aspect ratio {aspect:.2f} (not square): the image was "
            f"squashed to {side}x{side}; crop it square around the object for a fair answer"
        )
    if min(width, height) < side / 2 or min(width, height) > 8 * side:
        lines.append(
            f"{path.name}: warning: {width}x{height} is far from the model's {side}x{side}; "
            "the answer may not mean much (the model saw centred, size-normalised images)"
        )
    return lines


def plot_trajectories(
    classifier: AttractorClassifier,
    x: torch.Tensor,
    names: list[str],
    path: str,
    *,
    snapshots: int = 4,
    max_images: int = 8,
) -> None:
    """One row per image: the input, x(t) at ``snapshots`` times, the final state and the
    pattern of the class it reached."""
    import matplotlib.pyplot as plt

    from .plots import image_panel, save_figure

    x = x[:max_images]
    steps = max(1, round(classifier.t_eval / classifier.dt))
    every = max(1, steps // snapshots)
    with torch.no_grad():
        times, traj = classifier.model.integrate(
            x.to(classifier.model.dtype),
            classifier.t_eval,
            classifier.dt,
            method=classifier.method,
            record_every=every,
        )
    result = classify(classifier, x)
    first = list(range(1, len(times)))[: snapshots - 1]
    shown = list(dict.fromkeys([*first, len(times) - 1]))
    cols = 2 + len(shown)
    fig, axes = plt.subplots(len(x), cols, figsize=(1.8 * cols, 1.9 * len(x)), squeeze=False)
    patterns = classifier.model.patterns.detach().cpu()
    for i, row in enumerate(axes):
        image_panel(row[0], x[i].numpy(), names[i])
        for ax, j in zip(row[1:-1], shown, strict=True):
            image_panel(ax, traj[j, i].cpu().numpy(), f"t = {float(times[j]):.3g}", signed=True)
        k = result.predicted[i]
        image_panel(
            row[-1],
            patterns[k].numpy(),
            f"class {k}: {result.bucket[i]} ({result.overlap[i]:.3f})",
            signed=True,
        )
    save_figure(fig, path)
