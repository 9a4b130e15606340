"""Paper Fig. 8: convergence in the time step (Euler and RK4 against a tiny-step reference),
the MSE at time t against dt, and the fitted order of each method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined


@dataclass(frozen=True)
class TimestepSettings(Settings):
    study: str
    eps_train: float = 0.3  # the nearest level of the study's grid is used
    t: float = 10.0  # the time at which states are compared
    dts: tuple[float, ...] = (0.5, 0.25, 0.2, 0.1, 0.05, 0.025, 0.02, 0.01)
    methods: tuple[Literal["euler", "rk4"], ...] = ("euler", "rk4")
    reference_dt: float = 0.001  # RK4 at this step is the reference solution
    items: int = 100  # noisy test items
    eps_test: float = 0.3

    def check(self, where: str) -> None:
        from ...config import ConfigError

        for dt in [*self.dts, self.reference_dt]:
            if not dt > 0 or abs(self.t / dt - round(self.t / dt)) > 1e-9:
                raise ConfigError(
                    f"{where}: dt = {dt} does not divide t = {self.t}; pick time steps with an "
                    "integer number of steps to t"
                )


class Timestep(Analysis):
    name = "timestep"
    description = "Fig. 8: MSE at t against dt, Euler and RK4, fitted order"
    Settings = TimestepSettings
    tables: ClassVar[dict[str, Table]] = {
        "timestep": Table(
            "fig8_timestep",
            {
                "study": "O",
                "eps_train": "f",
                "method": "O",
                "dt": "f",
                "t": "f",
                "mse": "f",
                "error": "f",
                "reference_mse": "f",
                "order": "f",
            },
        ),
    }

    def figures(self, settings, config):
        return {"fig8": Figure("fig8_timestep_convergence", "fig8")}

    def check(self, settings: TimestepSettings, config) -> list[str]:
        return study_defined(self.name, [settings.study], config)

    def run(self, settings: TimestepSettings, ctx: Context) -> Result:
        import torch

        from ...core.noise import add_pixel_noise, noise_generator
        from ...probes import timestep

        study = settings.study
        eps = ctx.nearest_eps(study, settings.eps_train)
        x, y = ctx.prepared(study).split("test")
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[: settings.items]
        noisy = add_pixel_noise(x[pick], settings.eps_test, noise_generator(0, 0))
        table = timestep.timestep_convergence(
            ctx.model(study, eps),
            noisy,
            y[pick],
            t=settings.t,
            dts=list(settings.dts),
            methods=list(settings.methods),
            reference_dt=settings.reference_dt,
        )
        orders = timestep.fitted_order(table)
        table = table.assign(order=table["method"].map(orders), study=study, eps_train=eps)
        return Result({"timestep": table}, {f"order_{m}": o for m, o in orders.items()})

    def draw(self, settings: TimestepSettings, tables, figures, accuracy=None) -> None:
        import matplotlib.pyplot as plt

        from ..plots import save_figure

        table = tables["timestep"]
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
        save_figure(fig, figures["fig8"])
