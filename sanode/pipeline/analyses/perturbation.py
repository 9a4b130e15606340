"""Paper Figs. 5, 6: single and collective eigen-direction perturbations of one test image,
for the model of every eps_train (the robust fraction f of each), or of each of several
``targets`` (one model each: e.g. an MNIST and a Fashion-MNIST model beside the letters)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerturbationTarget(Settings):
    study: str
    eps_train: float = 0.3  # the model probed (nearest level of the study's grid)
    label: int = 0  # class of the test image


@dataclass(frozen=True)
class PerturbationSettings(Settings):
    # one study (every eps_train's model probed, the eps_train one shown in Fig. 5) ...
    study: str | None = None
    eps_train: float = 0.3  # the model shown in Fig. 5 (nearest level of the grid)
    label: int = 0  # class of the test image (letters: 0 = A)
    # ... or several targets, each one model
    targets: tuple[PerturbationTarget, ...] = ()
    sigmas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    samples: int = 32  # perturbation draws per point
    t_end: float = 40.0
    sigma_collective: float = 1.0
    tolerance: float = 0.05  # MSE degradation still counted as robust
    # the collective curve at this many numbers of perturbed coefficients (null: every one of
    # 0..N; an image model's N + 1 integrations per draw take minutes)
    collective_points: int | None = None

    def check(self, where: str) -> None:
        from ...config import ConfigError

        if (self.study is None) == (not self.targets):
            raise ConfigError(
                f"{where}: name one study (study, eps_train, label) or a list of targets "
                "({study, eps_train, label} each), not both and not neither"
            )
        if self.collective_points is not None and self.collective_points < 2:
            raise ConfigError(f"{where}.collective_points must be >= 2 or null")

    def probed(self) -> list[PerturbationTarget]:
        """The targets; the one-study form as one target."""
        if self.targets:
            return list(self.targets)
        assert self.study is not None
        return [PerturbationTarget(self.study, self.eps_train, self.label)]


class Perturbation(Analysis):
    name = "perturbation"
    description = (
        "Figs. 5-6: single and collective eigen-direction perturbations of one test image of "
        "class `label`"
    )
    Settings = PerturbationSettings
    tables: ClassVar[dict[str, Table]] = {
        "single": Table(
            "fig5_single_perturbation",
            {
                "study": "O",
                "eps_train": "f",
                "label": "i",
                "coefficient": "i",
                "sigma": "f",
                "mse": "f",
                "mse_std": "f",
                "mse_unperturbed": "f",
                "rank": "i",
                "shown": "b",
            },
        ),
        "collective": Table(
            "fig6_collective_perturbation",
            {
                "study": "O",
                "eps_train": "f",
                "label": "i",
                "m": "i",
                "fraction": "f",
                "mse": "f",
                "degradation": "f",
                "within": "b",
                "f": "f",
            },
        ),
    }

    def studies(self, settings: PerturbationSettings, config) -> list[str]:
        return list(dict.fromkeys(t.study for t in settings.probed()))

    def figures(self, settings: PerturbationSettings, config):
        if not settings.targets:
            return {
                "fig5": Figure("fig5_single_perturbation", "fig5"),
                "fig6": Figure("fig6_collective_perturbation", "fig6"),
            }
        out = {}
        for i, t in enumerate(settings.targets):
            stem = f"fig5_single_perturbation_{t.study}_eps{t.eps_train:g}_class{t.label}"
            out[f"fig5_{i}"] = Figure(stem, "fig5")
        for study in self.studies(settings, config):
            out[f"fig6_{study}"] = Figure(f"fig6_collective_perturbation_{study}", "fig6")
        return out

    def check(self, settings: PerturbationSettings, config) -> list[str]:
        return study_defined(self.name, self.studies(settings, config), config)

    def run(self, settings: PerturbationSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import perturbation

        singles, curves, metrics = [], [], {}
        for target in settings.probed():
            study, label = target.study, target.label
            cfg = ctx.train_config(study)
            image = ctx.test_image(study, label)
            shown = ctx.nearest_eps(study, target.eps_train)
            kw: dict[str, Any] = dict(t_end=settings.t_end, dt=cfg.dt, method=cfg.method)
            # the one-study form probes every eps_train's model (Fig. 6a), a target its own
            levels = [shown] if settings.targets else ctx.eps_grid(study)
            for eps in levels:
                model = ctx.model(study, eps)
                single = perturbation.single_coefficient(
                    model,
                    image,
                    label,
                    sigmas=list(settings.sigmas),
                    samples=settings.samples,
                    **kw,
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
                    points=settings.collective_points,
                    **kw,
                )
                f = perturbation.robust_fraction(curve)
                log.info("%s eps_train %g: f = %.3f (1 - f = %.3f)", study, eps, f, 1 - f)
                extra = {"study": study, "label": label, "eps_train": eps}
                singles.append(single.assign(**extra, shown=eps == shown))
                curves.append(curve.assign(**extra, f=f))
                prefix = f"{study}_" if settings.targets else ""
                metrics[f"{prefix}one_minus_f_eps{eps:g}"] = 1 - f
        return Result(
            {
                "single": pd.concat(singles, ignore_index=True),
                "collective": pd.concat(curves, ignore_index=True),
            },
            metrics,
        )

    def draw(self, settings: PerturbationSettings, tables, figures, accuracy=None) -> None:
        if not settings.targets:
            _draw_fig5(tables["single"], figures["fig5"])
            _draw_fig6(tables["collective"], settings, figures["fig6"], paper_point=True)
            return
        single, collective = tables["single"], tables["collective"]
        for i, t in enumerate(settings.targets):
            rows = single[(single["study"] == t.study) & (single["label"] == t.label)]
            eps = min(rows["eps_train"].unique(), key=lambda e: (abs(e - t.eps_train), e))
            _draw_fig5(rows[rows["eps_train"] == eps], figures[f"fig5_{i}"])
        for study in self.studies(settings, None):
            _draw_fig6(
                collective[collective["study"] == study],
                settings,
                figures[f"fig6_{study}"],
                paper_point=False,
            )


def _draw_fig5(single, path: str) -> None:
    """Fig. 5: MSE after perturbing one eigen-coefficient, per sigma and coefficient rank."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import save_figure

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


def _draw_fig6(collective, settings: PerturbationSettings, path: str, *, paper_point: bool) -> None:
    """Fig. 6: 1 - f per probed eps_train, and the degradation as more coefficients are
    perturbed together (``paper_point``: the paper's letters value beside it)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    summary = collective.drop_duplicates("eps_train").sort_values("eps_train")
    a.plot(summary["eps_train"], 1 - summary["f"], marker="o", label="this run")
    if paper_point:
        a.plot(
            [0.3],
            [0.3],
            marker="*",
            ms=12,
            ls="",
            color="tab:red",
            label="paper: ~70 % perturbable at eps_train = 0.3",
        )
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
    b.axhline(
        settings.tolerance,
        color="grey",
        ls="--",
        lw=0.8,
        label=f"{settings.tolerance:.0%} tolerance",
    )
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
    save_figure(fig, path)
