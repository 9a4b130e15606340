"""Paper Fig. 7: one test item per outcome (exact, partial, wrong), from the evaluation of the
study's first eps_train: input, final state and target side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from .base import Analysis, Context, Figure, Result, Table, study_defined

_IMAGE = {"panel": "O", "pixel": "i", "value": "f"}


@dataclass(frozen=True)
class CasesSettings(Settings):
    study: str


class Cases(Analysis):
    name = "cases"
    description = (
        "Fig. 7: one test item per outcome, from the evaluation of the study's first eps_train"
    )
    Settings = CasesSettings
    uses_states = True
    tables: ClassVar[dict[str, Table]] = {
        "cases": Table(
            "fig7_cases",
            {
                "study": "O",
                "eps_train": "f",
                "case": "O",
                "item": "i",
                "label": "i",
                "overlap": "f",
                **_IMAGE,
            },
        ),
    }

    def figures(self, settings, config):
        return {"fig7": Figure("fig7_three_cases", "fig7")}

    def check(self, settings: CasesSettings, config) -> list[str]:
        problems = study_defined(self.name, [settings.study], config)
        if problems:
            return problems
        eps_test = config["studies"][settings.study].get("evaluate", {}).get("eps_test", [0.0])
        if eps_test[0] != 0.0:
            problems.append(
                "analyses.cases: the study's evaluate.eps_test must start at 0.0 (the cases "
                "are drawn from the clean test set)"
            )
        return problems

    def run(self, settings: CasesSettings, ctx: Context) -> Result:
        import torch

        from ...probes import cases

        study = settings.study
        assert ctx.states is not None, "uses_states: the context holds the states file"
        saved = torch.load(ctx.states, weights_only=True)
        table = cases.three_cases(
            saved["inputs"],
            saved["final"],
            saved["overlap"],
            saved["labels"],
            ctx.prepared(study).patterns,
            threshold=ctx.train_config(study).threshold,
        )
        return Result({"cases": table.assign(study=study, eps_train=ctx.eps_grid(study)[0])})

    def draw(self, settings: CasesSettings, tables, figures, accuracy=None) -> None:
        import matplotlib.pyplot as plt

        from ..plots import image_panel, save_figure

        table = tables["cases"]
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
                image_panel(ax, values, title, signed=panel != "input")
        fig.suptitle(
            f"{table['study'].iloc[0]}: exact, partial and wrong (cf. paper Fig. 7)", fontsize=9
        )
        save_figure(fig, figures["fig7"])
