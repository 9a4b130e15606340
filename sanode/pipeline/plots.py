"""Seaborn figures drawn from the pipeline's Parquet tables only (the study figures: Fig. 3,
MSE(t), tuning, Sec. V buckets), and the helpers the analyses' figures share."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import selection

DPI = 110


def save_figure(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def image_panel(ax, values: np.ndarray, title: str, *, signed: bool = False) -> None:
    """An image from a flat (N,) array: square where N is a square, else one row of N pixels;
    grey for pixels, red-blue for signed states."""
    side = math.isqrt(values.size)
    shape = (side, side) if side * side == values.size else (1, values.size)
    kw = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1} if signed else {"cmap": "gray_r"}
    if signed:
        values = values / max(float(np.abs(values).max()), 1e-12)
    ax.imshow(values.reshape(shape), aspect="auto" if shape[0] == 1 else "equal", **kw)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def first_draw(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The best model's rows of the first test-noise draw (one per study, eps_train, eps_test)."""
    best = accuracy[accuracy["is_best"]]
    return best[best["noise_seed"] == best["noise_seed"].min()]


def _mf_lines(ax, data: pd.DataFrame, band: str) -> None:
    """One line per eps_train of ``data`` (columns eps_train, eps_test, m_f, lo, hi)."""
    palette = sns.color_palette("viridis", n_colors=max(1, data["eps_train"].nunique()))
    for color, (eps_train, group) in zip(palette, data.groupby("eps_train"), strict=False):
        group = group.sort_values("eps_test")
        ax.plot(
            group["eps_test"], group["m_f"], marker="o", ms=3, color=color, label=f"{eps_train:g}"
        )
        ax.fill_between(group["eps_test"], group["lo"], group["hi"], color=color, alpha=0.2, lw=0)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(xlabel=r"test noise $\epsilon_{test}$", ylabel=r"$m_f$ (eq. 5)", ylim=(0, 1.05))
    ax.set_title(band, fontsize=9)
    ax.legend(title=r"$\epsilon_{train}$", fontsize=7, title_fontsize=8, ncol=2)


def mf_vs_eps_test(accuracy: pd.DataFrame, study: str, path: str | os.PathLike) -> None:
    """Paper Fig. 3: m_f against eps_test, one line per eps_train.

    (a) the selected (best) model of each eps_train, as in the paper: mean over the test-noise
    draws, band +- 1 sd over them (one draw: +- 1 standard error over the items). (b) with
    several training seeds, the mean over the seeds, band from the worst to the best seed.
    """
    data = accuracy[accuracy["study"] == study]
    seeds, noise = data["train_seed"].nunique(), data["noise_seed"].nunique()
    best = (
        data[data["is_best"]]
        .groupby(["eps_train", "eps_test"])
        .agg(m_f=("m_f", "mean"), sd=("m_f", "std"), item=("m_f_std", "mean"), n=("n", "first"))
        .reset_index()
    )
    err = best["sd"].fillna(0) if noise > 1 else best["item"] / best["n"].clip(lower=1) ** 0.5
    best = best.assign(lo=best["m_f"] - err, hi=best["m_f"] + err)
    panels = 2 if seeds > 1 else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.4), squeeze=False)
    spread = f"+-1 sd over {noise} test-noise draws" if noise > 1 else "+-1 s.e. over items"
    _mf_lines(axes[0, 0], best, f"(a) selected model per eps_train; band {spread}")
    if seeds > 1:
        per_seed = data.groupby(["eps_train", "eps_test", "train_seed"])["m_f"].mean()
        by = per_seed.groupby(["eps_train", "eps_test"])
        all_seeds = by.agg(m_f="mean", lo="min", hi="max").reset_index()
        _mf_lines(
            axes[0, 1], all_seeds, f"(b) mean over {seeds} training seeds; band: worst to best seed"
        )
    fig.suptitle(f"{study}: overlap with the target attractor (cf. paper Fig. 3)", fontsize=10)
    save_figure(fig, path)


def mse_lines(ax, curves: pd.DataFrame, title: str) -> None:
    """The MSE(t) panel of paper Fig. 4 on ``ax``: one line per eps_test (``curves``: columns
    t, mse, eps_test), symlog scale; the one drawing of MSE(t) (the evaluate stage's Fig. 4a
    and the ``mse_time`` analysis' Fig. 4 use it)."""
    sns.lineplot(data=curves, x="t", y="mse", hue="eps_test", palette="magma", ax=ax, legend="full")
    ax.set(yscale="symlog", xlabel="time t", ylabel="MSE(t) (eq. 6)", title=title)
    ax.legend(title=r"$\epsilon_{test}$", fontsize=7, title_fontsize=8, ncol=2)


def mse_over_time(curves: pd.DataFrame, study: str, path: str | os.PathLike) -> None:
    """Paper Fig. 4a: MSE(t) per eps_test for the model with eps_train closest to 0.3."""
    data = curves[curves["study"] == study]
    levels = sorted(data["eps_train"].unique())
    chosen = min(levels, key=lambda e: abs(e - 0.3)) if levels else 0.0
    fig, ax = plt.subplots(figsize=(6, 4.2))
    mse_lines(
        ax,
        data[data["eps_train"] == chosen],
        f"{study}: MSE over time, eps_train = {chosen:g} (cf. paper Fig. 4a)",
    )
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


def _label(item: tuple[str, object]) -> str:
    column, value = item
    return f"{column[6:]}={value:g}" if isinstance(value, float) else f"{column[6:]}={value}"


def final_trials(trials: pd.DataFrame, study: str, metric: str) -> pd.DataFrame:
    """One row per finished trial of ``study`` (its last epoch), in the order the trials were
    created (``n`` = 1, 2, ...), with ``setting``: its searched values other than eps_train."""
    data = trials[trials["study"] == study]
    if metric not in data:
        return data.iloc[0:0].assign(n=[], setting=[])
    last = selection.finished(data, metric).sort_values("trial_id")
    params = [
        c
        for c in last.columns
        if c.startswith("param_") and c != "param_eps_train" and last[c].notna().any()
    ]
    if params:
        setting = last[params].apply(lambda row: ", ".join(map(_label, row.items())), axis=1)
    else:
        setting = pd.Series("(one setting)", index=last.index)
    return last.assign(n=range(1, len(last) + 1), setting=setting.astype(str))


def tuning_curves(trials: pd.DataFrame, study: str, metric: str, path: str | os.PathLike) -> None:
    """The search at a glance: (a) every trial's final metric in creation order and the best
    so far; (b) the final metric per eps_train and searched setting (mean over the seeds when
    the seed is searched alongside: the heatmap shows which settings work at which noise).
    A study of one trial (nothing searched) shows its learning curve instead: the metric of
    every epoch."""
    data = final_trials(trials, study, metric)
    if len(data) == 1 and trials.loc[trials["study"] == study, "trial_id"].nunique() == 1:
        return _learning_curve(trials, study, metric, path)
    failed = trials[(trials["study"] == study) & (trials["status"] == "ERROR")]["trial_id"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1, 1.3]})
    if data.empty:
        a.text(0.5, 0.5, "no finished trial", ha="center", va="center")
    else:
        maximize = not metric.endswith("mse")
        best = data[metric].cummax() if maximize else data[metric].cummin()
        a.scatter(data["n"], data[metric], s=12, color="tab:grey", label="final metric of a trial")
        a.step(data["n"], best, where="post", color="tab:red", label="best so far")
        a.legend(fontsize=8)
        settings = data.drop(columns="param_seed", errors="ignore")
        if "param_seed" in data:  # the seed is the spread, not a setting
            setting = settings["setting"].str.replace(r"(^|, )seed=[^,]*", "", regex=True)
            setting = setting.str.removeprefix(", ").replace("", "(one setting)")
            settings = settings.assign(setting=setting)
        grid = settings.pivot_table(
            index="eps_train", columns="setting", values=metric, aggfunc="mean"
        )
        sns.heatmap(
            grid,
            annot=grid.shape[1] <= 6,
            fmt=".2f",
            cmap="viridis",
            ax=b,
            cbar_kws={"label": metric},
        )
        b.set(xlabel="searched setting", ylabel=r"$\epsilon_{train}$")
    a.set(
        xlabel="trial (creation order)",
        ylabel=metric,
        title=f"(a) {len(data)} finished trials, {failed.nunique()} failed",
    )
    b.set_title("(b) final metric by eps_train and setting", fontsize=10)
    fig.suptitle(f"{study}: the hyperparameter search", fontsize=10)
    save_figure(fig, path)


def _learning_curve(trials: pd.DataFrame, study: str, metric: str, path) -> None:
    """The one trial of a study that searches nothing: its metric and learning rate by epoch."""
    rows = trials[trials["study"] == study].sort_values("epoch")
    fig, a = plt.subplots(figsize=(7, 4.2))
    a.plot(rows["epoch"], rows[metric], marker="o", ms=4, color="tab:blue", label=metric)
    a.set(
        xlabel="epoch",
        ylabel=metric,
        title=f"one trial ({rows['trial_id'].iloc[0]}), final {metric} {rows[metric].iloc[-1]:.4f}",
    )
    a.title.set_fontsize(10)
    if "learning_rate" in rows and rows["learning_rate"].notna().any():
        lr = a.twinx()
        lr.plot(rows["epoch"], rows["learning_rate"], color="tab:grey", ls="--", lw=1)
        lr.set_ylabel("learning rate (end of epoch, dashed)", color="tab:grey")
    fig.suptitle(f"{study}: the training run (nothing searched)", fontsize=10)
    save_figure(fig, path)
