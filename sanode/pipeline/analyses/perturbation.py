"""Paper Figs. 5, 6: single and collective eigen-direction perturbations of one test image,
for the model of every eps_train (the robust fraction f of each)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerturbationSettings(Settings):
    study: str
    eps_train: float = 0.3  # the model shown in Fig. 5 (nearest level of the grid)
    label: int = 0  # class of the test image (letters: 0 = A)
    sigmas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    samples: int = 32  # perturbation draws per point
    t_end: float = 40.0
    sigma_collective: float = 1.0
    tolerance: float = 0.05  # MSE degradation still counted as robust


class Perturbation(Analysis):
    name = "perturbation"
    description = (
        "Figs. 5-6: single and collective eigen-direction perturbations of one test image of "
        "class `label`"
    )
    Settings = PerturbationSettings
    tables: ClassVar[dict[str, Table]] = {
        "single": Table("fig5_single_perturbation", {
            "study": "O", "eps_train": "f", "label": "i", "coefficient": "i", "sigma": "f",
            "mse": "f", "mse_std": "f", "mse_unperturbed": "f", "rank": "i", "shown": "b"}),
        "collective": Table("fig6_collective_perturbation", {
            "study": "O", "eps_train": "f", "label": "i", "m": "i", "fraction": "f", "mse": "f",
            "degradation": "f", "within": "b", "f": "f"}),
    }  # fmt: skip

    def figures(self, settings, config):
        return {
            "fig5": Figure("fig5_single_perturbation", "fig5"),
            "fig6": Figure("fig6_collective_perturbation", "fig6"),
        }

    def check(self, settings: PerturbationSettings, config) -> list[str]:
        return study_defined(self.name, [settings.study], config)

    def run(self, settings: PerturbationSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import perturbation

        study, label = settings.study, settings.label
        cfg = ctx.train_config(study)
        image = ctx.test_image(study, label)
        shown = ctx.nearest_eps(study, settings.eps_train)
        kw: dict[str, Any] = dict(t_end=settings.t_end, dt=cfg.dt, method=cfg.method)
        singles, curves = [], []
        for eps in ctx.eps_grid(study):
            model = ctx.model(study, eps)
            single = perturbation.single_coefficient(
                model, image, label, sigmas=list(settings.sigmas), samples=settings.samples, **kw
            )
            order = single.drop_duplicates("coefficient").sort_values("rank")["coefficient"]
            curve = perturbation.collective(
                model,
                image,
                label,
                [int(j) for j in order],
                sigma=settings.sigma_collective,
                samples=settings.samples,
                tolerance=settings.tolerance,
                **kw,
            )
            f = perturbation.robust_fraction(curve)
            log.info("eps_train %g: f = %.3f (1 - f = %.3f)", eps, f, 1 - f)
            singles.append(single.assign(eps_train=eps, shown=eps == shown))
            curves.append(curve.assign(eps_train=eps, f=f))
        extra = {"study": study, "label": label}
        collective = pd.concat(curves, ignore_index=True).assign(**extra)
        summary = collective.drop_duplicates("eps_train")
        pairs = zip(summary["eps_train"], summary["f"], strict=True)
        return Result(
            {
                "single": pd.concat(singles, ignore_index=True).assign(**extra),
                "collective": collective,
            },
            {f"one_minus_f_eps{e:g}": 1 - f for e, f in pairs},
        )

    def draw(self, settings: PerturbationSettings, tables, figures, accuracy=None) -> None:
        import matplotlib.pyplot as plt
        import seaborn as sns

        from ..plots import save_figure

        # Fig. 5: MSE after perturbing one eigen-coefficient, per sigma and coefficient rank
        single = tables["single"]
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
        save_figure(fig, figures["fig5"])

        # Fig. 6: 1 - f per eps_train, and the degradation as more coefficients are perturbed
        collective = tables["collective"]
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
        sns.lineplot(data=collective, x="fraction", y="degradation", hue="eps_train",
                     palette="viridis", ax=b)  # fmt: skip
        b.axhline(settings.tolerance, color="grey", ls="--", lw=0.8,
                  label=f"{settings.tolerance:.0%} tolerance")  # fmt: skip
        b.set(
            xlabel="fraction of coefficients perturbed together (least sensitive first)",
            ylabel="MSE degradation / N(2a)^2",
            title=f"(b) collective perturbation, sigma = {settings.sigma_collective:g}",
        )
        b.legend(title=r"$\epsilon_{train}$", fontsize=7, title_fontsize=8, ncol=2)
        fig.suptitle(
            f"{collective['study'].iloc[0]}: collective eigen-perturbations (cf. paper Fig. 6)",
            fontsize=10,
        )
        save_figure(fig, figures["fig6"])
