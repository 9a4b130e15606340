"""Paper Fig. 4: MSE(t) on noisy copies of one test image, and the final-MSE histogram."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

EPS_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class MseTimeSettings(Settings):
    study: str
    eps_train: float = 0.3  # the nearest level of the study's grid is used
    label: int = 3  # class of the test image (letters: 3 = D)
    items: int = 2000  # noisy copies per eps_test
    eps_test: tuple[float, ...] = EPS_GRID
    t_end: float = 40.0
    every: int = 5  # record the MSE every this many steps
    histogram_eps: float = 0.6  # the eps_test of the histogram panel


class MseTime(Analysis):
    name = "mse_time"
    description = (
        "Fig. 4: MSE(t) on noisy copies of one test image of class `label`, final-MSE histogram"
    )
    Settings = MseTimeSettings
    tables: ClassVar[dict[str, Table]] = {
        "curves": Table(
            "fig4_mse_time",
            {
                "study": "O",
                "eps_train": "f",
                "label": "i",
                "eps_test": "f",
                "t": "f",
                "mse": "f",
                "mse_std": "f",
            },
        ),
        "finals": Table(
            "fig4_final_mse",
            {
                "study": "O",
                "eps_train": "f",
                "label": "i",
                "eps_test": "f",
                "item": "i",
                "final_mse": "f",
                "on_target": "b",
            },
        ),
    }

    def figures(self, settings, config):
        return {"fig4": Figure("fig4_mse_time_one_class", "fig4_one_class")}

    def check(self, settings: MseTimeSettings, config) -> list[str]:
        return study_defined(self.name, [settings.study], config)

    def run(self, settings: MseTimeSettings, ctx: Context) -> Result:
        from ...probes import mse_time

        study = settings.study
        eps = ctx.nearest_eps(study, settings.eps_train)
        cfg = ctx.train_config(study)
        curves, finals = mse_time.mse_over_time(
            ctx.model(study, eps),
            ctx.test_image(study, settings.label),
            settings.label,
            eps_test=list(settings.eps_test),
            items=settings.items,
            t_end=settings.t_end,
            dt=cfg.dt,
            method=cfg.method,
            every=settings.every,
        )
        extra = {"study": study, "eps_train": eps, "label": settings.label}
        at = finals[(finals["eps_test"] - settings.histogram_eps).abs() < 1e-9]
        on_target = float(at["on_target"].mean()) if len(at) else -1.0
        return Result(
            {"curves": curves.assign(**extra), "finals": finals.assign(**extra)},
            {"on_target_fraction_at_histogram_eps": on_target},
        )

    def draw(self, settings: MseTimeSettings, tables, figures, accuracy=None) -> None:
        import matplotlib.pyplot as plt

        from ..plots import mse_lines, save_figure

        curves, finals = tables["curves"], tables["finals"]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        study, eps_train, label = curves.iloc[0][["study", "eps_train", "label"]]
        n_items = finals.groupby("eps_test").size().iloc[0]
        mse_lines(
            a, curves, f"(a) {n_items} noisy copies of class {label}, eps_train = {eps_train:g}"
        )
        levels = sorted(finals["eps_test"].unique())
        shown = min(levels, key=lambda e: abs(e - settings.histogram_eps))
        at = finals[finals["eps_test"] == shown]
        b.hist(at["final_mse"], bins=40, color="tab:purple")
        b.set(
            xlabel="final MSE of a copy",
            ylabel="copies",
            title=f"(b) eps_test = {shown:g}: {at['on_target'].mean():.1%} end on their attractor",
        )
        fig.suptitle(f"{study}: MSE over time (cf. paper Fig. 4)", fontsize=10)
        save_figure(fig, figures["fig4"])
