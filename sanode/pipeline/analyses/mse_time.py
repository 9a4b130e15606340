"""Paper Fig. 4: MSE(t) on noisy copies of one test image, and the final-MSE histogram."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

EPS_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class MseTimeTarget(Settings):
    study: str
    eps_train: float = 0.3  # the nearest level of the study's grid is used
    label: int = 3  # class of the test image


@dataclass(frozen=True)
class MseTimeSettings(Settings):
    # one model (study, eps_train, label) ...
    study: str | None = None
    eps_train: float = 0.3  # the nearest level of the study's grid is used
    label: int = 3  # class of the test image (letters: 3 = D)
    # ... or several, one figure each
    targets: tuple[MseTimeTarget, ...] = ()
    items: int = 2000  # noisy copies per eps_test
    eps_test: tuple[float, ...] = EPS_GRID
    t_end: float = 40.0
    every: int = 5  # record the MSE every this many steps
    histogram_eps: float = 0.6  # the eps_test of the histogram panel

    def check(self, where: str) -> None:
        from ...config import ConfigError

        if (self.study is None) == (not self.targets):
            raise ConfigError(
                f"{where}: name one study (study, eps_train, label) or a list of targets "
                "({study, eps_train, label} each), not both and not neither"
            )

    def chosen(self) -> list[MseTimeTarget]:
        """The targets; the one-study form as one target."""
        if self.targets:
            return list(self.targets)
        assert self.study is not None
        return [MseTimeTarget(self.study, self.eps_train, self.label)]


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

    def studies(self, settings: MseTimeSettings, config) -> list[str]:
        return list(dict.fromkeys(t.study for t in settings.chosen()))

    def figures(self, settings: MseTimeSettings, config):
        if not settings.targets:
            return {"fig4": Figure("fig4_mse_time_one_class", "fig4_one_class")}
        return {
            f"fig4_{i}": Figure(
                f"fig4_mse_time_{t.study}_eps{t.eps_train:g}_class{t.label}", "fig4_one_class"
            )
            for i, t in enumerate(settings.targets)
        }

    def check(self, settings: MseTimeSettings, config) -> list[str]:
        return study_defined(self.name, self.studies(settings, config), config)

    def run(self, settings: MseTimeSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import mse_time

        all_curves, all_finals, metrics = [], [], {}
        for target in settings.chosen():
            study = target.study
            eps = ctx.nearest_eps(study, target.eps_train)
            cfg = ctx.train_config(study)
            curves, finals = mse_time.mse_over_time(
                ctx.model(study, eps),
                ctx.test_image(study, target.label),
                target.label,
                eps_test=list(settings.eps_test),
                items=settings.items,
                t_end=settings.t_end,
                dt=cfg.dt,
                method=cfg.method,
                every=settings.every,
            )
            extra = {"study": study, "eps_train": eps, "label": target.label}
            at = finals[(finals["eps_test"] - settings.histogram_eps).abs() < 1e-9]
            key = "on_target_fraction_at_histogram_eps"
            if settings.targets:
                key = f"{study}_eps{eps:g}_class{target.label}_{key}"
            metrics[key] = float(at["on_target"].mean()) if len(at) else -1.0
            all_curves.append(curves.assign(**extra))
            all_finals.append(finals.assign(**extra))
        return Result(
            {
                "curves": pd.concat(all_curves, ignore_index=True),
                "finals": pd.concat(all_finals, ignore_index=True),
            },
            metrics,
        )

    def draw(self, settings: MseTimeSettings, tables, figures, accuracy=None) -> None:
        if not settings.targets:
            _draw_fig4(tables["curves"], tables["finals"], settings, figures["fig4"])
            return
        curves, finals = tables["curves"], tables["finals"]
        for i, t in enumerate(settings.targets):
            mine = (finals["study"] == t.study) & (finals["label"] == t.label)
            eps = min(
                finals.loc[mine, "eps_train"].unique(), key=lambda e: (abs(e - t.eps_train), e)
            )
            pick = mine & (finals["eps_train"] == eps)
            rows = (
                (curves["study"] == t.study)
                & (curves["label"] == t.label)
                & (curves["eps_train"] == eps)
            )
            _draw_fig4(curves[rows], finals[pick], settings, figures[f"fig4_{i}"])


def _draw_fig4(curves, finals, settings: MseTimeSettings, path: str) -> None:
    """Fig. 4 of one model: MSE(t) per eps_test, and the final-MSE histogram."""
    import matplotlib.pyplot as plt

    from ..plots import mse_lines, save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    study, eps_train, label = curves.iloc[0][["study", "eps_train", "label"]]
    n_items = finals.groupby("eps_test").size().iloc[0]
    mse_lines(a, curves, f"(a) {n_items} noisy copies of class {label}, eps_train = {eps_train:g}")
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
    save_figure(fig, path)
