"""Paper Figs. 9-12: every pixel's trajectory from one test image, and recovering the image by
integrating backwards, against T_inv, dt and the dtype (one entry per target)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

log = logging.getLogger(__name__)

_IMAGE = {"panel": "O", "pixel": "i", "value": "f"}


@dataclass(frozen=True)
class InversionTarget(Settings):
    study: str
    label: int = 0  # class of the test image
    t_inv: float = 3.2  # the horizon of the recovered image shown


@dataclass(frozen=True)
class InversionSettings(Settings):
    targets: tuple[InversionTarget, ...]
    t_inv_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0)  # with each target's t_inv
    dts: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01)
    dtypes: tuple[Literal["float32", "float64"], ...] = ("float32", "float64")
    method: Literal["euler", "rk4"] = "rk4"
    trajectory_t: float = 8.0
    trajectory_dt: float = 0.01
    trajectory_every: int = 5

    def check(self, where: str) -> None:
        from ...config import ConfigError

        if not self.targets:
            raise ConfigError(f"{where}.targets: list at least one {{study, label, t_inv}}")


class Inversion(Analysis):
    name = "inversion"
    description = (
        "Figs. 9-12: pixel trajectories and backward integration of one test image per entry"
    )
    Settings = InversionSettings
    tables: ClassVar[dict[str, Table]] = {
        "trajectories": Table(
            "fig9_trajectories",
            {
                "study": "O",
                "label": "i",
                "eps_train": "f",
                "t_inv": "f",
                "t": "f",
                "pixel": "i",
                "value": "f",
            },
        ),
        "errors": Table(
            "fig10_inversion",
            {
                "study": "O",
                "label": "i",
                "eps_train": "f",
                "t_inv": "f",
                "dt": "f",
                "dtype": "O",
                "method": "O",
                "max_error": "f",
                "rms_error": "f",
            },
        ),
        "images": Table(
            "fig10_inversion_images",
            {
                "study": "O",
                "label": "i",
                "eps_train": "f",
                "t_inv": "f",
                "shown_t_inv": "f",
                "dt": "f",
                "dtype": "O",
                **_IMAGE,
            },
        ),
    }

    def studies(self, settings: InversionSettings, config) -> list[str]:
        return list(dict.fromkeys(t.study for t in settings.targets))

    def figures(self, settings: InversionSettings, config) -> dict[str, Figure]:
        out = {}
        for study in self.studies(settings, config):
            out[f"trajectories_{study}"] = Figure(f"fig9_11_trajectories_{study}", "fig9_11")
            out[f"inversion_{study}"] = Figure(f"fig10_12_inversion_{study}", "fig10_12")
        return out

    def check(self, settings: InversionSettings, config) -> list[str]:
        return study_defined(self.name, self.studies(settings, config), config)

    def run(self, settings: InversionSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import inversion

        trajectories, grids, images = [], [], []
        for target in settings.targets:
            study, label = target.study, target.label
            eps = ctx.eps_grid(study)[0]
            model = ctx.model(study, eps)
            image = ctx.test_image(study, label)
            extra = {"study": study, "label": label, "eps_train": eps}
            traj = inversion.pixel_trajectories(
                model,
                image,
                t_end=settings.trajectory_t,
                dt=settings.trajectory_dt,
                every=settings.trajectory_every,
            )
            trajectories.append(traj.assign(**extra, t_inv=target.t_inv))
            t_invs = sorted({*settings.t_inv_grid, target.t_inv})
            grid = inversion.inversion_grid(
                model,
                image,
                t_invs=t_invs,
                dts=list(settings.dts),
                dtypes=list(settings.dtypes),
                method=settings.method,
            )
            grids.append(grid.assign(**extra))
            images.append(
                inversion.inversion_images(
                    model, image, t_invs=t_invs, dt=min(settings.dts), method=settings.method
                ).assign(**extra, shown_t_inv=target.t_inv)
            )
            log.info("inversion %s: %s", study, grid.to_dict("records"))
        return Result(
            {
                "trajectories": pd.concat(trajectories, ignore_index=True),
                "errors": pd.concat(grids, ignore_index=True),
                "images": pd.concat(images, ignore_index=True),
            }
        )

    def draw(self, settings: InversionSettings, tables, figures, accuracy=None) -> None:
        for key, path in figures.items():
            kind, study = key.split("_", 1)
            if kind == "trajectories":
                _trajectories(tables["trajectories"], study, path)
            else:
                _inversion(tables["errors"], tables["images"], study, path)


def _trajectories(traj, study: str, path: str) -> None:
    """Figs. 9 / 11: every pixel's trajectory from one image."""
    import matplotlib.pyplot as plt

    from ..plots import save_figure

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


def _inversion(errors, images, study: str, path: str) -> None:
    """Figs. 10 / 12: input, x(T_inv) and the recovered image; error against T_inv, dt, dtype."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import image_panel, save_figure

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
        image_panel(ax, values, title, signed=panel == "forward")
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
