"""Figures of the analyses (paper Figs. 4-12, baselines, census), drawn from their tables only."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plots import DPI, first_draw, save_figure

Path_ = str | os.PathLike


def _image(ax, values: np.ndarray, title: str, *, signed: bool = False) -> None:
    side = round(math.sqrt(values.size))
    kw = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1} if signed else {"cmap": "gray_r"}
    if signed:
        values = values / max(float(np.abs(values).max()), 1e-12)
    ax.imshow(values.reshape(side, side), **kw)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def fig4_mse_time(
    curves: pd.DataFrame, finals: pd.DataFrame, path: Path_, *, histogram_eps: float = 0.6
) -> None:
    """Fig. 4: (a) MSE(t) per eps_test on copies of one image; (b) final-MSE histogram."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    study, eps_train, label = curves.iloc[0][["study", "eps_train", "label"]]
    sns.lineplot(data=curves, x="t", y="mse", hue="eps_test", palette="magma", ax=a, legend="full")
    n_items = finals.groupby("eps_test").size().iloc[0]
    a.set(
        yscale="symlog",
        xlabel="time t",
        ylabel="MSE(t) (eq. 6)",
        title=f"(a) {n_items} noisy copies of class {label}, eps_train = {eps_train:g}",
    )
    a.legend(title=r"$\epsilon_{test}$", fontsize=7, title_fontsize=8, ncol=2)
    levels = sorted(finals["eps_test"].unique())
    shown = min(levels, key=lambda e: abs(e - histogram_eps))
    at = finals[finals["eps_test"] == shown]
    b.hist(at["final_mse"], bins=40, color="tab:purple")
    b.set(
        xlabel="final MSE of a copy",
        ylabel="copies",
        title=f"(b) eps_test = {shown:g}: {at['on_target'].mean():.1%} end on their attractor",
    )
    fig.suptitle(f"{study}: MSE over time (cf. paper Fig. 4)", fontsize=10)
    save_figure(fig, path)


def fig5_single(single: pd.DataFrame, path: Path_) -> None:
    """Fig. 5: MSE after perturbing one eigen-coefficient, per sigma and coefficient rank."""
    data = single[single["shown"]]
    grid = data.pivot_table(index="rank", columns="sigma", values="mse")
    fig, ax = plt.subplots(figsize=(6.5, 5))
    sns.heatmap(grid, cmap="viridis", ax=ax, cbar_kws={"label": "steady-state MSE"})
    ax.invert_yaxis()
    base = data["mse_unperturbed"].iloc[0]
    ax.set(
        xlabel=r"$\sigma$ of the perturbation $\mathcal{N}(0, \sigma)$",
        ylabel="coefficient (ordered by MSE)",
        title=f"{data['study'].iloc[0]}, class {data['label'].iloc[0]}, eps_train = "
        f"{data['eps_train'].iloc[0]:g}: one coefficient at a time\n(unperturbed MSE "
        f"{base:.2g}; cf. paper Fig. 5)",
    )
    ax.title.set_fontsize(9)
    save_figure(fig, path)


def fig6_collective(collective: pd.DataFrame, path: Path_, *, tolerance: float = 0.05) -> None:
    """Fig. 6: 1 - f per eps_train, and the degradation as more coefficients are perturbed."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    summary = collective.drop_duplicates("eps_train").sort_values("eps_train")
    a.plot(summary["eps_train"], 1 - summary["f"], marker="o", label="this run")
    a.plot([0.3], [0.3], marker="*", ms=12, ls="", color="tab:red",
           label="paper: ~70 % perturbable at eps_train = 0.3")  # fmt: skip
    a.set(
        xlabel=r"training noise $\epsilon_{train}$",
        ylabel="1 - f (sensitive directions)",
        ylim=(0, 1.05),
        title="(a) fraction that must stay unperturbed (smaller is better)",
    )
    a.legend(fontsize=7)
    sns.lineplot(
        data=collective, x="fraction", y="degradation", hue="eps_train", palette="viridis", ax=b
    )
    b.axhline(tolerance, color="grey", ls="--", lw=0.8, label=f"{tolerance:.0%} tolerance")
    b.set(
        xlabel="fraction of coefficients perturbed together (least sensitive first)",
        ylabel="MSE degradation / N(2a)^2",
        title="(b) collective perturbation, sigma = 1",
    )
    b.legend(title=r"$\epsilon_{train}$", fontsize=7, title_fontsize=8, ncol=2)
    fig.suptitle(
        f"{collective['study'].iloc[0]}: collective eigen-perturbations (cf. paper Fig. 6)",
        fontsize=10,
    )
    save_figure(fig, path)


def fig7_cases(table: pd.DataFrame, path: Path_) -> None:
    """Fig. 7: one item per outcome: input, final state and target side by side."""
    cases = list(dict.fromkeys(table["case"]))
    fig, axes = plt.subplots(len(cases), 3, figsize=(6, 2.1 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        part = table[table["case"] == case]
        info = part.iloc[0]
        for ax, panel in zip(row, ("input", "final", "target"), strict=True):
            values = part[part["panel"] == panel].sort_values("pixel")["value"].to_numpy()
            title = f"{case}: {panel}" + (
                f" (overlap {info['overlap']:.3f})" if panel == "final" else ""
            )
            _image(ax, values, title, signed=panel != "input")
    fig.suptitle(
        f"{table['study'].iloc[0]}: exact, partial and wrong (cf. paper Fig. 7)", fontsize=9
    )
    save_figure(fig, path)


def fig8_timestep(table: pd.DataFrame, path: Path_) -> None:
    """Fig. 8: error against a reference solution and the MSE at t, against dt."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for method, group in table.groupby("method"):
        g = group.sort_values("dt")
        label = f"{method} (order {g['order'].iloc[0]:.2f})"
        a.loglog(g["dt"], g["error"], marker="o", label=label)
        b.semilogx(g["dt"], g["mse"], marker="o", label=method)
    t = table["t"].iloc[0]
    a.set(
        xlabel=r"time step $\Delta t$",
        ylabel=f"max |x(t={t:g}) - reference|",
        title="(a) error against RK4 at a tiny step",
    )
    b.axhline(table["reference_mse"].iloc[0], color="grey", ls="--", lw=0.8, label="reference")
    b.set(
        xlabel=r"time step $\Delta t$",
        ylabel=f"MSE at t = {t:g}",
        title="(b) MSE at t (the paper's Fig. 8 quantity)",
    )
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle(
        f"{table['study'].iloc[0]}, eps_train = {table['eps_train'].iloc[0]:g}: "
        "time-step convergence (cf. paper Fig. 8)",
        fontsize=10,
    )
    save_figure(fig, path)


def fig9_trajectories(traj: pd.DataFrame, study: str, path: Path_) -> None:
    """Figs. 9 / 11: every pixel's trajectory from one image."""
    data = traj[traj["study"] == study]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    wide = data.pivot(index="t", columns="pixel", values="value")
    ax.plot(wide.index, wide.to_numpy(), lw=0.3, alpha=0.4, color="tab:blue")
    ax.axvline(data["t_inv"].iloc[0], color="tab:red", ls="--", lw=0.8, label="T_inv")
    ax.set(
        xlabel="time t",
        ylabel="pixel value x_i(t)",
        title=f"{study}: all {wide.shape[1]} pixels of one test image of class "
        f"{data['label'].iloc[0]} (cf. paper Figs. 9, 11)",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def fig10_inversion(errors: pd.DataFrame, images: pd.DataFrame, study: str, path: Path_) -> None:
    """Figs. 10 / 12: input, x(T_inv) and the recovered image; error against T_inv, dt, dtype."""
    img = images[images["study"] == study]
    err = errors[errors["study"] == study]
    shown = img["shown_t_inv"].iloc[0]
    fig = plt.figure(figsize=(11, 3.8))
    grid = fig.add_gridspec(1, 5, width_ratios=[1, 1, 1, 0.15, 3.2])
    panels = [
        ("input", "input x(0)"),
        ("forward", f"x(T_inv = {shown:g})"),
        ("recovered", "recovered (backward)"),
    ]
    at = img[img["t_inv"] == shown]
    for i, (panel, title) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        values = at[at["panel"] == panel].sort_values("pixel")["value"].to_numpy()
        _image(ax, values, title, signed=panel == "forward")
    ax = fig.add_subplot(grid[0, 4])
    sns.lineplot(
        data=err,
        x="t_inv",
        y="max_error",
        hue="dt",
        style="dtype",
        marker="o",
        palette="crest",
        ax=ax,
    )
    ax.set(
        yscale="log",
        xlabel="T_inv",
        ylabel="max |recovered - input|",
        title=f"reconstruction error ({err['method'].iloc[0]})",
    )
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.suptitle(
        f"{study}: inversion by backward integration (cf. paper Figs. 10, 12); "
        f"images at dt = {img['dt'].iloc[0]:g}, float64",
        fontsize=9,
    )
    save_figure(fig, path)


def baselines_vs_sanode(
    baselines: pd.DataFrame, accuracy: pd.DataFrame, study: str, path: Path_, *, max_panels: int = 4
) -> None:
    """Accuracy against eps_test: SA-nODE (H and nearest attractor) beside the baselines."""
    base = baselines[baselines["study"] == study]
    ours = first_draw(accuracy[accuracy["study"] == study])
    levels = sorted(base["eps_train"].unique())
    if len(levels) > max_panels:
        idx = np.linspace(0, len(levels) - 1, max_panels).round().astype(int)
        levels = [levels[i] for i in sorted(set(idx))]
    rows = [base[["eps_train", "eps_test", "accuracy", "model"]]]
    for col, name in (("accuracy", "SA-nODE (H)"), ("nearest_accuracy", "SA-nODE (nearest)")):
        rows.append(ours[["eps_train", "eps_test"]].assign(accuracy=ours[col], model=name))
    data = pd.concat(rows, ignore_index=True)
    data = data[data["eps_train"].isin(levels)]
    grid = sns.relplot(
        data=data,
        kind="line",
        x="eps_test",
        y="accuracy",
        hue="model",
        style="model",
        markers=True,
        col="eps_train",
        height=3,
        aspect=1.0,
    )
    grid.set_axis_labels(r"test noise $\epsilon_{test}$", "accuracy")
    params = base.drop_duplicates("model").set_index("model")["parameters"].to_dict()
    grid.figure.suptitle(
        f"{study}: SA-nODE against baselines on the same noisy test sets (parameters: {params})",
        fontsize=9,
    )
    grid.figure.subplots_adjust(top=0.82, right=0.85, bottom=0.17)
    grid.figure.savefig(path, dpi=DPI)
    plt.close(grid.figure)


def census_figure(stability: pd.DataFrame, census: pd.DataFrame, path: Path_) -> None:
    """Stability certificate (largest Jacobian eigenvalue) and the attractor census."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 1.6]})
    for study, group in stability.groupby("study"):
        a.plot(group["eps_train"], group["max_real_jacobian_eig"], marker="o", label=study)
    a.axhline(0, color="grey", lw=0.8)
    a.set(
        xlabel=r"$\epsilon_{train}$",
        ylabel="largest Jacobian eigenvalue at the attractors",
        title="(a) certificate: negative = every planted pattern is stable",
    )
    a.legend(fontsize=8)
    frame = census.assign(
        model=census["study"]
        + " "
        + census["eps_train"].map("{:g}".format)
        + "\n"
        + census["source"]
    )
    parts = ["planted", "spurious", "not_converged"]
    bottom = np.zeros(len(frame))
    colors = {"planted": "tab:green", "spurious": "tab:orange", "not_converged": "tab:grey"}
    for part in parts:
        share = (frame[part] / frame["n"]).to_numpy()
        b.bar(range(len(frame)), share, bottom=bottom, color=colors[part], label=part)
        bottom += share
    for i, d in enumerate(frame["distinct_spurious"]):
        if d:
            b.text(i, 1.01, str(d), ha="center", fontsize=5)
    b.set_xticks(range(len(frame)))
    b.set_xticklabels(frame["model"], rotation=90, fontsize=6)
    b.set(
        ylabel="fraction of inputs",
        ylim=(0, 1.1),
        title="(b) census: where inputs end (number: distinct spurious attractors)",
    )
    b.legend(fontsize=7, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    save_figure(fig, path)
