"""Beyond the paper: the stability certificate (largest Jacobian eigenvalue at the planted
patterns) and the attractor census (where test images and random inputs end) of every
trained model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CensusSettings(Settings):
    count: int = 500  # inputs per source
    t_end: float = 200.0
    tol: float = 1.0e-4  # converged once max|F(x)| < tol
    seed: int = 0


class Census(Analysis):
    name = "census"
    description = "stability certificate and attractor census of every trained model"
    category = "Beyond the paper"
    Settings = CensusSettings
    tables: ClassVar[dict[str, Table]] = {
        "stability": Table(
            "stability",
            {
                "study": "O",
                "eps_train": "f",
                "max_real_jacobian_eig": "f",
                "relaxation_time": "f",
                "stability_bound": "f",
                "max_eigenvalue": "f",
                "gamma": "f",
            },
        ),
        "census": Table(
            "census",
            {
                "study": "O",
                "eps_train": "f",
                "source": "O",
                "n": "i",
                "planted": "i",
                "spurious": "i",
                "not_converged": "i",
                "distinct_spurious": "i",
                "planted_fraction": "f",
            },
        ),
    }

    def studies(self, settings, config) -> list[str]:
        return list(config["studies"])

    def figures(self, settings, config) -> dict[str, Figure]:
        return {"census": Figure("census_stability", "census")}

    def run(self, settings: CensusSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import census

        stability, rows = [], []
        for study in ctx.config["studies"]:
            dt = ctx.train_config(study).dt
            x_te, _ = ctx.prepared(study).split("test")
            inputs = census.census_inputs(x_te, settings.count, seed=settings.seed)
            for eps in ctx.eps_grid(study):
                model = ctx.model(study, eps)
                stability.append(
                    {"study": study, "eps_train": eps, **model.stability_report(numeric=False)}
                )
                for source, x in inputs.items():
                    result = census.attractor_census(
                        model, x, t_end=settings.t_end, dt=dt, tol=settings.tol
                    )
                    rows.append({"study": study, "eps_train": eps, "source": source, **result})
                    log.info("%s eps_train %g %s: %s", study, eps, source, result)
        worst = max(r["max_real_jacobian_eig"] for r in stability)
        return Result(
            {"stability": pd.DataFrame(stability), "census": pd.DataFrame(rows)},
            {"max_real_jacobian_eig_all_models": worst},
        )

    def draw(self, settings, tables, figures, accuracy=None) -> None:
        import matplotlib.pyplot as plt
        import numpy as np

        from ..plots import save_figure

        stability, census = tables["stability"], tables["census"]
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
        bottom = np.zeros(len(frame))
        colors = {"planted": "tab:green", "spurious": "tab:orange", "not_converged": "tab:grey"}
        for part, color in colors.items():
            share = (frame[part] / frame["n"]).to_numpy()
            b.bar(range(len(frame)), share, bottom=bottom, color=color, label=part)
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
        save_figure(fig, figures["census"])
