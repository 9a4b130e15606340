"""Seaborn figures drawn from the pipeline's Parquet tables only."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

DPI = 110


def save_figure(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def first_draw(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The best model's rows of the first test-noise draw (one per study, eps_train, eps_test)."""
    best = accuracy[accuracy["is_best"]]
    return best[best["noise_seed"] == best["noise_seed"].min()]


def mf_vs_eps_test(accuracy: pd.DataFrame, study: str, path: str | os.PathLike) -> None:
    """Paper Fig. 3: m_f against eps_test, one line per eps_train.

    With several training seeds or test-noise draws the line is the mean over all of them and
    the band +- 1 standard deviation; with one model and one draw, +- 1 standard error over
    the items.
    """
    data = accuracy[accuracy["study"] == study]
    seeds, noise = data["train_seed"].nunique(), data["noise_seed"].nunique()
    draws = seeds * noise
    data = (
        data.groupby(["eps_train", "eps_test"])
        .agg(
            m_f=("m_f", "mean"),
            spread=("m_f", "std"),
            item_std=("m_f_std", "mean"),
            n=("n", "first"),
        )
        .reset_index()
        .sort_values(["eps_train", "eps_test"])
    )
    fig, ax = plt.subplots(figsize=(6, 4.2))
    palette = sns.color_palette("viridis", n_colors=max(1, data["eps_train"].nunique()))
    for color, (eps_train, group) in zip(palette, data.groupby("eps_train"), strict=False):
        ax.plot(
            group["eps_test"], group["m_f"], marker="o", ms=3, color=color, label=f"{eps_train:g}"
        )
        err = group["spread"] if draws > 1 else group["item_std"] / group["n"].clip(lower=1) ** 0.5
        ax.fill_between(
            group["eps_test"], group["m_f"] - err, group["m_f"] + err, color=color, alpha=0.2, lw=0
        )
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel=r"test noise $\epsilon_{test}$",
        ylabel=r"$m_f$ (eq. 5)",
        title=f"{study}: overlap with the target attractor (cf. paper Fig. 3)"
        + (
            f"\nband: +-1 sd over {seeds} training seed(s) x {noise} test-noise draw(s)"
            if draws > 1
            else ""
        ),
    )
    ax.legend(title=r"$\epsilon_{train}$", fontsize=7, title_fontsize=8, ncol=2)
    save_figure(fig, path)


def mse_over_time(curves: pd.DataFrame, study: str, path: str | os.PathLike) -> None:
    """Paper Fig. 4a: MSE(t) per eps_test for the model with eps_train closest to 0.3."""
    data = curves[curves["study"] == study]
    levels = sorted(data["eps_train"].unique())
    chosen = min(levels, key=lambda e: abs(e - 0.3)) if levels else 0.0
    data = data[data["eps_train"] == chosen]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    sns.lineplot(data=data, x="t", y="mse", hue="eps_test", palette="magma", ax=ax, legend="full")
    ax.set(
        yscale="symlog",
        xlabel="time t",
        ylabel="MSE(t) (eq. 6)",
        title=f"{study}: MSE over time, eps_train = {chosen:g} (cf. paper Fig. 4a)",
    )
    ax.legend(title=r"$\epsilon_{test}$", fontsize=7, title_fontsize=8, ncol=2)
    save_figure(fig, path)


def buckets_vs_paper(secv: pd.DataFrame, path: str | os.PathLike) -> None:
    """Sec. V: accuracy buckets on the clean test set beside the paper's counts (the
    ``secV_accuracy`` table: one ``sanode`` row per study, a ``paper`` row where it reports)."""
    rows = []
    for _, r in secv.iterrows():
        for bucket in ("exact", "partial", "wrong"):
            rows.append(
                {
                    "data set": f"{r['study']}\n(n={int(r['n'])})"
                    if r["source"] == "sanode"
                    else None,
                    "study": r["study"],
                    "bucket": bucket,
                    "source": r["source"],
                    "percent": 100 * r[bucket] / r["n"],
                }
            )
    frame = pd.DataFrame(rows)
    names = frame.dropna(subset=["data set"]).drop_duplicates("study")
    frame["data set"] = frame["study"].map(
        dict(zip(names["study"], names["data set"], strict=True))
    )
    grid = sns.catplot(
        data=frame,
        kind="bar",
        x="bucket",
        y="percent",
        hue="source",
        col="data set",
        height=3.4,
        aspect=0.8,
        palette="Set2",
    )
    grid.set_axis_labels("", "% of test items")
    grid.figure.suptitle(
        "Accuracy buckets at eps_test = 0: exact (m_f = 1), partial (0.95 <= m_f < 1), wrong",
        fontsize=9,
    )
    for ax in grid.axes.flat:
        for container in ax.containers:
            ax.bar_label(container, fmt="%.1f", fontsize=6)
    grid.figure.tight_layout()
    grid.figure.savefig(path, dpi=DPI)
    plt.close(grid.figure)


def tuning_curves(trials: pd.DataFrame, study: str, metric: str, path: str | os.PathLike) -> None:
    """Validation metric against epoch for every trial of a study (colour: eps_train)."""
    data = (
        trials[(trials["study"] == study) & trials[metric].notna()]
        if metric in trials
        else trials.iloc[0:0]
    )
    fig, ax = plt.subplots(figsize=(6, 4.2))
    if not data.empty:
        sns.lineplot(
            data=data,
            x="epoch",
            y=metric,
            hue="eps_train",
            units="trial_id",
            estimator=None,
            palette="viridis",
            ax=ax,
            lw=1,
        )
    failed = trials[(trials["study"] == study) & (trials["status"] == "ERROR")][
        "trial_id"
    ].nunique()
    ax.set(
        xlabel="epoch",
        ylabel=metric,
        title=f"{study}: tuning curves ({data['trial_id'].nunique()} trials, {failed} failed)",
    )
    save_figure(fig, path)
