"""Beyond the paper: logistic regression and an MLP of the SA-nODE's parameter count, trained
and scored in the same harness (same data, training noise and noisy test sets) for every
study and eps_train, beside the SA-nODE's accuracy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..settings import Settings
from ..study import evaluate_settings
from .base import Analysis, Context, Figure, Result, Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselinesSettings(Settings):
    epochs: int = 20  # with patience: the most epochs
    batch_size: int = 100
    lr: float = 0.001
    seed: int = 0
    # validate every epoch on the study's validation split (at the training noise) and keep
    # the best epoch, stopping after this many epochs without a better one (trained to
    # convergence); null: train all epochs, keep the last
    patience: int | None = None

    def check(self, where: str) -> None:
        from ...config import ConfigError

        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key} must be a positive integer")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{where}.patience must be a positive integer or null")
        if not self.lr > 0:
            raise ConfigError(f"{where}.lr must be > 0, got {self.lr}")


class Baselines(Analysis):
    name = "baselines"
    description = (
        "logistic regression and an MLP of the SA-nODE's parameter count, every study, every "
        "eps_train"
    )
    category = "Beyond the paper"
    Settings = BaselinesSettings
    uses_accuracy = True
    tables: ClassVar[dict[str, Table]] = {
        "baselines": Table(
            "baselines",
            {
                "study": "O",
                "dataset": "O",
                "model": "O",
                "eps_train": "f",
                "eps_test": "f",
                "noise_seed": "i",
                "n": "i",
                "accuracy": "f",
                "parameters": "i",
                "epoch": "i",
                "epochs_run": "i",
                "val_accuracy": "f",
            },
        ),
    }

    def studies(self, settings, config) -> list[str]:
        return list(config["studies"])

    def figures(self, settings, config) -> dict[str, Figure]:
        out = {}
        for s in config["studies"]:
            out[f"baselines_{s}"] = Figure(f"baselines_{s}", "baselines")
            out[f"noisegrid_{s}"] = Figure(f"fig3_versus_mlp_{s}", "fig3_versus_mlp")
            out[f"advantage_{s}"] = Figure(f"advantage_over_mlp_{s}", "advantage_over_mlp")
        return out

    def run(self, settings: BaselinesSettings, ctx: Context) -> Result:
        """Every study, eps_train and kind; each fit's scored rows are kept in the study's
        ``scores-baselines`` folder (:mod:`sanode.pipeline.kept`), so a stopped analysis
        (or one carried to another machine) fits only the baselines it lacks."""
        import pandas as pd

        from ... import files
        from ...probes import baselines
        from .. import kept, layout

        frames = []
        for study in ctx.config["studies"]:
            prepared = ctx.prepared(study)
            x_tr, y_tr = prepared.split("train")
            x_te, y_te = prepared.split("test")
            val = prepared.split("val") if settings.patience is not None else None
            k = prepared.patterns.shape[0]
            ev = evaluate_settings(ctx.config, study)
            data = kept.tensor_digest(
                [("x_tr", x_tr), ("y_tr", y_tr), ("x_te", x_te), ("y_te", y_te)]
                + ([("x_val", val[0]), ("y_val", val[1])] if val is not None else [])
            )
            for eps in ctx.eps_grid(study):
                for kind in baselines.KINDS:
                    path = Path(layout.scores_dir(study, "baselines")) / (
                        kept.key(
                            data=data,
                            kind=kind,
                            eps_train=eps,
                            settings=settings.to_dict(),
                            eps_test=list(ev.eps_test),
                            seed=ev.seed,
                            noise_seeds=ev.noise_seeds,
                        )
                        + ".parquet"
                    )
                    if path.is_file():
                        frames.append(pd.read_parquet(path))
                        log.info("%s %s eps_train %g: read back from %s", study, kind, eps, path)
                        continue
                    fit = baselines.train_baseline(
                        kind,
                        x_tr,
                        y_tr,
                        k,
                        eps_train=eps,
                        epochs=settings.epochs,
                        batch_size=settings.batch_size,
                        lr=settings.lr,
                        seed=settings.seed,
                        val=None if val is None else (val[0], val[1]),
                        patience=settings.patience,
                    )
                    table = baselines.evaluate_baseline(
                        fit.model,
                        x_te,
                        y_te,
                        eps_test=list(ev.eps_test),
                        seed=ev.seed,
                        noise_seeds=ev.noise_seeds,
                    )
                    frame = table.assign(
                        study=study,
                        dataset=prepared.meta.get("dataset", study),
                        model=kind,
                        eps_train=eps,
                        parameters=sum(p.numel() for p in fit.model.parameters()),
                        epoch=fit.epoch,
                        epochs_run=fit.epochs_run,
                        val_accuracy=fit.val_accuracy,
                    )
                    files.write_parquet(path, frame, what="baseline scores")
                    frames.append(frame)
                    log.info(
                        "%s %s eps_train %g: epoch %d of %d, %s",
                        study,
                        kind,
                        eps,
                        fit.epoch,
                        fit.epochs_run,
                        table["accuracy"].round(4).tolist(),
                    )
        return Result({"baselines": pd.concat(frames, ignore_index=True)})

    def draw(self, settings, tables, figures, accuracy=None) -> None:
        import pandas as pd

        ours = accuracy if accuracy is not None else pd.DataFrame()
        for key, path in figures.items():
            kind, study = key.split("_", 1)
            draw = {"baselines": _versus_sanode, "noisegrid": _noise_grid, "advantage": _advantage}[
                kind
            ]
            draw(tables["baselines"], ours, study, path)


def _versus_sanode(baselines, accuracy, study: str, path: str, *, max_panels: int = 4) -> None:
    """Accuracy against eps_test: SA-nODE (H and nearest attractor) beside the baselines."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import seaborn as sns

    from ..plots import DPI, first_draw

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


def _noise_grid(baselines, accuracy, study: str, path: str) -> None:
    """Fig. 3 beside the MLP: SA-nODE's H (solid) and the MLP's accuracy (dashed) against
    eps_test, one colour per eps_train; m_f beside it. Means over the test-noise draws."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import save_figure

    ours = accuracy[(accuracy["study"] == study) & accuracy["is_best"]]
    mlp = baselines[(baselines["study"] == study) & (baselines["model"] == "mlp")]
    levels = sorted(ours["eps_train"].unique())
    palette = dict(
        zip(levels, sns.color_palette("viridis", n_colors=max(1, len(levels))), strict=True)
    )
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for eps in levels:
        mine = ours[ours["eps_train"] == eps].groupby("eps_test")[["accuracy", "m_f"]].mean()
        a.plot(mine.index, mine["accuracy"], marker="o", ms=3, color=palette[eps], label=f"{eps:g}")
        b.plot(mine.index, mine["m_f"], marker="o", ms=3, color=palette[eps], label=f"{eps:g}")
        theirs = mlp[mlp["eps_train"] == eps].groupby("eps_test")["accuracy"].mean()
        a.plot(theirs.index, theirs.to_numpy(), ls="--", lw=1, color=palette[eps])
    a.set(
        xlabel=r"test noise $\epsilon_{test}$",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title="(a) SA-nODE H (solid), the MLP (dashed: same parameters, same noise)",
    )
    b.set(
        xlabel=r"test noise $\epsilon_{test}$",
        ylabel=r"$m_f$ (mean overlap)",
        title="(b) SA-nODE $m_f$ (cf. paper Fig. 3)",
    )
    for ax in (a, b):
        ax.title.set_fontsize(9)
    b.legend(title=r"$\epsilon_{train}$", fontsize=7, title_fontsize=8, ncol=2)
    fig.suptitle(f"{study}: the noise grid, means over the test-noise draws", fontsize=10)
    save_figure(fig, path)


def advantage_table(baselines, accuracy, study: str):
    """SA-nODE minus MLP accuracy per (eps_train, eps_test): ``h`` (SA-nODE's H) and
    ``nearest`` (its nearest-attractor accuracy) minus the MLP's argmax accuracy, means over
    the shared test-noise draws (the selected models of each eps_train)."""
    ours = accuracy[(accuracy["study"] == study) & accuracy["is_best"]]
    mine = ours.groupby(["eps_train", "eps_test"])[["accuracy", "nearest_accuracy"]].mean()
    mlp = baselines[(baselines["study"] == study) & (baselines["model"] == "mlp")]
    theirs = mlp.groupby(["eps_train", "eps_test"])["accuracy"].mean()
    out = mine.join(theirs.rename("mlp"), how="inner")
    out["h"] = out["accuracy"] - out["mlp"]
    out["nearest"] = out["nearest_accuracy"] - out["mlp"]
    return out.reset_index()


def _advantage(baselines, accuracy, study: str, path: str) -> None:
    """Heatmaps over eps_train x eps_test: SA-nODE's H and nearest-attractor accuracy minus
    the MLP's accuracy (points; > 0: SA-nODE ahead)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import save_figure

    table = advantage_table(baselines, accuracy, study)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (col, title) in zip(
        axes, (("h", "H (sign overlap >= 0.95)"), ("nearest", "nearest attractor")), strict=True
    ):
        grid = table.pivot(index="eps_train", columns="eps_test", values=col) * 100
        sns.heatmap(
            grid,
            cmap="RdBu",
            center=0,
            annot=True,
            fmt=".0f",
            annot_kws={"size": 6},
            cbar_kws={"label": "points"},
            ax=ax,
        )
        ax.invert_yaxis()
        ax.set(
            xlabel=r"test noise $\epsilon_{test}$",
            ylabel=r"training noise $\epsilon_{train}$",
            title=f"SA-nODE {title} minus the MLP",
        )
        ax.title.set_fontsize(9)
    fig.suptitle(
        f"{study}: where the attractor classifier leads (blue) or trails (red) an "
        "equal-size MLP trained at the same noise",
        fontsize=10,
    )
    save_figure(fig, path)


def robustness_summary(baselines, accuracy, study: str, at: float = 0.3) -> dict:
    """The robustness answer of one study, from the tables (means over the shared test-noise
    draws of each eps_train's selected model):

    * at ``eps_test = at``: SA-nODE's best H and best nearest-attractor accuracy over the
      eps_train grid and the eps_train giving each, the MLP's and the logistic regression's
      best accuracy and their eps_train;
    * ``clean_cost``: SA-nODE's clean H (eps_test 0) at the eps_train of its best H at ``at``,
      minus its clean H at the smallest eps_train (points; < 0 is a cost);
    * ``most_robust``: the eps_train whose model has the highest H averaged over every
      eps_test (the area under its Fig. 3 curve), and that mean;
    * ``leads`` / ``trails`` / ``cells``: the (eps_train, eps_test) cells where the nearest
      accuracy is above / below the MLP's at the same eps_train, and all cells;
      ``lead_from``: the smallest eps_test from which it leads at every larger eps_test for
      every eps_train (None: no such level); ``lead_cells``: eps_train -> the eps_test levels
      where it leads; ``best_lead``: (points, eps_train, eps_test) of its largest lead, or
      None."""
    import math

    ours = accuracy[(accuracy["study"] == study) & accuracy["is_best"]]
    if ours.empty:
        raise ValueError(f"the accuracy table has no rows of study {study!r}")
    mean = ours.groupby(["eps_train", "eps_test"])[["accuracy", "nearest_accuracy"]].mean()
    mean = mean.reset_index()
    levels = sorted(mean["eps_test"].unique())
    if not any(math.isclose(e, at) for e in levels):
        raise ValueError(f"study {study!r} was not scored at eps_test {at:g} (levels {levels})")
    near_at = mean[mean["eps_test"].sub(at).abs() < 1e-9]
    base = baselines[baselines["study"] == study]
    out: dict = {"study": study, "at": at}
    for col, key in (("accuracy", "h"), ("nearest_accuracy", "nearest")):
        row = near_at.loc[near_at[col].idxmax()]
        out[key] = float(row[col])
        out[f"{key}_eps_train"] = float(row["eps_train"])
    for kind in ("mlp", "logistic"):
        theirs = base[(base["model"] == kind) & (base["eps_test"].sub(at).abs() < 1e-9)]
        per = theirs.groupby("eps_train")["accuracy"].mean()
        out[kind] = float(per.max()) if len(per) else float("nan")
        out[f"{kind}_eps_train"] = float(per.idxmax()) if len(per) else float("nan")
    clean = mean[mean["eps_test"] == min(levels)].set_index("eps_train")["accuracy"]
    out["clean_h"] = float(clean.loc[out["h_eps_train"]])
    out["clean_h_smallest"] = float(clean.iloc[0])
    out["clean_cost"] = out["clean_h"] - out["clean_h_smallest"]
    area = mean.groupby("eps_train")["accuracy"].mean()
    out["most_robust"] = float(area.idxmax())
    out["most_robust_mean_h"] = float(area.max())
    table = advantage_table(baselines, accuracy, study)
    out["cells"] = len(table)
    out["leads"] = int((table["nearest"] > 0).sum())
    out["trails"] = int((table["nearest"] < 0).sum())
    out["h_leads"] = int((table["h"] > 0).sum())
    lead_from = None
    for eps in sorted(table["eps_test"].unique(), reverse=True):
        if (table.loc[table["eps_test"] >= eps, "nearest"] > 0).all():
            lead_from = float(eps)
        else:
            break
    out["lead_from"] = lead_from
    leading = table[table["nearest"] > 0]
    out["lead_cells"] = {
        float(e): sorted(float(t) for t in g["eps_test"]) for e, g in leading.groupby("eps_train")
    }
    if len(leading):
        top = leading.loc[leading["nearest"].idxmax()]
        out["best_lead"] = (float(top["nearest"]), float(top["eps_train"]), float(top["eps_test"]))
    else:
        out["best_lead"] = None
    return out
