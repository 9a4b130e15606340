"""Beyond the paper: logistic regression and an MLP of the SA-nODE's parameter count, trained
and scored in the same harness (same data, training noise and noisy test sets) for every
study and eps_train, beside the SA-nODE's accuracy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from ..study import evaluate_settings
from .base import Analysis, Context, Figure, Result, Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselinesSettings(Settings):
    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.001
    seed: int = 0


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
        "baselines": Table("baselines", {"study": "O", "dataset": "O", "model": "O",
                                         "eps_train": "f", "eps_test": "f", "n": "i",
                                         "accuracy": "f", "parameters": "i"}),
    }  # fmt: skip

    def studies(self, settings, config) -> list[str]:
        return list(config["studies"])

    def figures(self, settings, config) -> dict[str, Figure]:
        return {f"baselines_{s}": Figure(f"baselines_{s}", "baselines") for s in config["studies"]}

    def run(self, settings: BaselinesSettings, ctx: Context) -> Result:
        import pandas as pd

        from ...probes import baselines

        frames = []
        for study in ctx.config["studies"]:
            prepared = ctx.prepared(study)
            x_tr, y_tr = prepared.split("train")
            x_te, y_te = prepared.split("test")
            k = prepared.patterns.shape[0]
            ev = evaluate_settings(ctx.config, study)
            for eps in ctx.eps_grid(study):
                for kind in baselines.KINDS:
                    model = baselines.train_baseline(
                        kind,
                        x_tr,
                        y_tr,
                        k,
                        eps_train=eps,
                        epochs=settings.epochs,
                        batch_size=settings.batch_size,
                        lr=settings.lr,
                        seed=settings.seed,
                    )
                    table = baselines.evaluate_baseline(
                        model, x_te, y_te, eps_test=list(ev.eps_test), seed=ev.seed
                    )
                    frames.append(
                        table.assign(
                            study=study,
                            dataset=prepared.meta.get("dataset", study),
                            model=kind,
                            eps_train=eps,
                            parameters=sum(p.numel() for p in model.parameters()),
                        )
                    )
                    log.info("%s %s eps_train %g: %s", study, kind, eps,
                             table["accuracy"].round(4).tolist())  # fmt: skip
        return Result({"baselines": pd.concat(frames, ignore_index=True)})

    def draw(self, settings, tables, figures, accuracy=None) -> None:
        import pandas as pd

        for key, path in figures.items():
            _versus_sanode(tables["baselines"], accuracy if accuracy is not None else
                           pd.DataFrame(), key.removeprefix("baselines_"), path)  # fmt: skip


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
    grid = sns.relplot(data=data, kind="line", x="eps_test", y="accuracy", hue="model",
                       style="model", markers=True, col="eps_train", height=3,
                       aspect=1.0)  # fmt: skip
    grid.set_axis_labels(r"test noise $\epsilon_{test}$", "accuracy")
    params = base.drop_duplicates("model").set_index("model")["parameters"].to_dict()
    grid.figure.suptitle(
        f"{study}: SA-nODE against baselines on the same noisy test sets (parameters: {params})",
        fontsize=9,
    )
    grid.figure.subplots_adjust(top=0.82, right=0.85, bottom=0.17)
    grid.figure.savefig(path, dpi=DPI)
    plt.close(grid.figure)
