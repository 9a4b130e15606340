"""Beyond the paper: which searched settings matter. For every study, from its trials table:
the validation metric of each trial against the value of each searched setting, a ranking of
the settings by the share of the metric's variance their value explains (first-order,
fANOVA-style: the variance of the per-value means over the total variance) with the Spearman
rank correlation beside it, and the best trial's value of each setting.

Trials are compared at one epoch: the last one every compared trial reached (the last epoch
when none was stopped early). With ASHA a stopped trial's last epoch is earlier than a
finished one's; comparing each at its own last epoch would credit the finished trials with
their extra epochs, not with their settings.

Read the ranking against ``seed`` when the seed is searched: a setting explaining no more
variance than the seed does not matter at this budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..settings import Settings
from ..study import study_settings
from .base import Analysis, Context, Figure, Result, Table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class SensitivitySettings(Settings):
    bins: int = 4  # quantile bins of a setting with more distinct values than this
    top: int = 3  # settings drawn against the metric in the figure, most important first

    def check(self, where: str) -> None:
        from ...config import ConfigError

        for key in ("bins", "top"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key} must be >= 1, got {getattr(self, key)}")


class Sensitivity(Analysis):
    name = "sensitivity"
    description = (
        "hyperparameter sensitivity: per study, the validation metric against each searched "
        "setting and the settings ranked by the variance share they explain"
    )
    category = "Beyond the paper"
    Settings = SensitivitySettings
    uses_models = False
    uses_trials = True
    tables: ClassVar[dict[str, Table]] = {
        "ranking": Table(
            "sensitivity",
            {
                "study": "O",
                "setting": "O",
                "metric": "O",
                "epoch": "i",
                "variance_share": "f",
                "chance_share": "f",
                "spearman": "f",
                "rank": "i",
                "levels": "i",
                "trials": "i",
                "best_value": "O",
                "best_metric": "f",
            },
        ),
        "points": Table(
            "sensitivity_points",
            {
                "study": "O",
                "trial_id": "O",
                "setting": "O",
                "value": "O",
                "numeric_value": "f",
                "metric": "O",
                "metric_value": "f",
            },
        ),
    }

    def studies(self, settings, config) -> list[str]:
        return list(config["studies"])

    def figures(self, settings, config) -> dict[str, Figure]:
        return {
            f"sensitivity_{s}": Figure(f"sensitivity_{s}", "sensitivity") for s in config["studies"]
        }

    def run(self, settings: SensitivitySettings, ctx: Context) -> Result:
        import pandas as pd

        rankings, points = [], []
        for study in ctx.config["studies"]:
            spec = study_settings(dict(ctx.config), study)
            ranking, pts = sensitivity(
                pd.read_parquet(ctx.trials[study]),
                list(spec.search_space),
                metric=spec.metric,
                mode=spec.mode,
                bins=settings.bins,
            )
            rankings.append(ranking.assign(study=study))
            points.append(pts.assign(study=study))
        ranking = pd.concat(rankings, ignore_index=True)
        metrics = {
            f"variance_share_{r.study}_{r.setting}": r.variance_share for r in ranking.itertuples()
        }
        return Result({"ranking": ranking, "points": pd.concat(points, ignore_index=True)}, metrics)

    def draw(self, settings: SensitivitySettings, tables, figures, accuracy=None) -> None:
        for key, path in figures.items():
            study = key.removeprefix("sensitivity_")
            ranking, points = tables["ranking"], tables["points"]
            _figure(
                ranking[ranking["study"] == study],
                points[points["study"] == study],
                study,
                path,
                top=settings.top,
            )


def sensitivity(
    trials: pd.DataFrame, settings: list[str], *, metric: str, mode: str = "max", bins: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank the searched ``settings`` by how much of ``metric``'s variance they explain.

    Args:
        trials: the trials table (one row per trial and epoch, ``param_<setting>`` columns);
            failed trials and trials without the metric are left out; the others count with
            their metric at the last epoch all of them reached (``epoch`` in the ranking).
        settings: the searched settings (the study's search-space keys); a setting with one
            value over the trials is left out (nothing to rank).
        bins: a numeric setting with more distinct values than this is grouped in this many
            quantile bins for the variance share (the Spearman correlation uses the values).

    Returns:
        ranking: one row per setting: ``variance_share`` (between-group variance of the
            metric's per-value means over its total variance, in [0, 1]), ``spearman``
            (rank correlation with a numeric setting, NaN otherwise), ``rank`` (1 = the
            largest share), ``chance_share`` (the share a setting unrelated to the metric
            explains on average with as many groups and trials, (groups - 1) / (trials - 1):
            a share near it means nothing), ``levels`` (distinct values), ``trials``, and the
            best trial's ``best_value`` (as text) and ``best_metric``.
        points: one row per (trial, setting): the value (text and, when numeric, number)
            and the metric.
    """
    import numpy as np
    import pandas as pd

    columns = [
        "setting",
        "metric",
        "epoch",
        "variance_share",
        "chance_share",
        "spearman",
        "rank",
        "levels",
        "trials",
        "best_value",
        "best_metric",
    ]
    point_columns = ["trial_id", "setting", "value", "numeric_value", "metric", "metric_value"]
    if metric not in trials:
        raise ValueError(f"the trials table has no column {metric!r} (the study's metric)")
    last, epoch = _at_common_epoch(trials, metric)
    y = last[metric].astype(float)
    # a setting with one value over the trials has nothing to rank
    ranked = [
        k for k in settings if f"param_{k}" in last and last[f"param_{k}"].nunique(dropna=False) > 1
    ]
    if ranked:  # then there are trials
        best = last.loc[y.idxmax() if mode == "max" else y.idxmin()]
    rows, pts = [], []
    for key in ranked:
        column = f"param_{key}"
        values = last[column]
        effect, numeric = _effect(values, y, bins)
        rows.append(
            {
                "setting": key,
                "metric": metric,
                "epoch": epoch,
                **effect,
                "levels": int(values.nunique()),
                "trials": len(last),
                "best_value": str(best[column]),
                "best_metric": float(best[metric]),
            }
        )
        pts.append(
            pd.DataFrame(
                {
                    "trial_id": last["trial_id"].astype(str),
                    "setting": key,
                    "value": values.astype(str),
                    "numeric_value": numeric if numeric is not None else np.nan,
                    "metric": metric,
                    "metric_value": y,
                }
            )
        )
    # explicit dtypes: a study without searched settings gives empty frames, which must
    # concatenate with the others without turning their numbers into objects
    ranking = pd.DataFrame(rows, columns=[c for c in columns if c != "rank"]).astype(
        {
            "epoch": "int64",
            "variance_share": "float64",
            "chance_share": "float64",
            "spearman": "float64",
            "levels": "int64",
            "trials": "int64",
            "best_metric": "float64",
        }
    )
    ranking = ranking.sort_values(["variance_share", "setting"], ascending=[False, True])
    ranking.insert(4, "rank", np.arange(1, len(ranking) + 1, dtype=np.int64))
    ranking = ranking.reset_index(drop=True)
    points = pd.concat(pts, ignore_index=True) if pts else pd.DataFrame(columns=point_columns)
    points = points.astype({"numeric_value": "float64", "metric_value": "float64"})
    return ranking[columns], points[point_columns]


def _at_common_epoch(trials: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """One row per finished trial with ``metric`` at the last epoch all of them reached
    (trials stopped early by the scheduler set it), sorted by trial; and that epoch."""
    from ..selection import finished

    last = finished(trials, metric)
    epoch = int(last["epoch"].min()) if len(last) else 0
    if len(last) and (last["epoch"] > epoch).any():  # some trials were stopped early
        at = trials[trials["trial_id"].isin(last["trial_id"]) & (trials["epoch"] == epoch)]
        last = at.drop_duplicates("trial_id", keep="last").dropna(subset=[metric])
    return last.sort_values("trial_id").reset_index(drop=True), epoch


def _effect(
    values: pd.Series, y: pd.Series, bins: int
) -> tuple[dict[str, float], pd.Series | None]:
    """How much of the metric ``y`` one setting's ``values`` (one per trial) explain:
    ``variance_share``, ``chance_share`` and ``spearman`` (see :func:`sensitivity`); and the
    values as floats where the setting is numeric (else None)."""
    import numpy as np
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    is_numeric = (
        bool(numeric.notna().all())
        and values.map(lambda v: not isinstance(v, (bool, np.bool_))).all()
    )
    groups = values.astype(str)
    if is_numeric and numeric.nunique() > bins:
        groups = pd.qcut(numeric.rank(method="first"), q=bins, labels=False).astype(str)
    total = float(((y - y.mean()) ** 2).mean())
    means = y.groupby(groups).transform("mean")
    share = float(((means - y.mean()) ** 2).mean() / total) if total > 0 else 0.0
    # what a setting unrelated to the metric explains on average: (groups - 1) / (n - 1)
    chance = (groups.nunique() - 1) / (len(values) - 1)
    rho = float(numeric.corr(y, method="spearman")) if is_numeric else float("nan")
    effect = {"variance_share": share, "chance_share": chance, "spearman": rho}
    return effect, numeric.astype(float) if is_numeric else None


def _figure(ranking, points, study: str, path: str, *, top: int) -> None:
    """(a) variance share per setting (Spearman's rho as text); then the metric against the
    value of the ``top`` most important settings, one dot per trial."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import NullFormatter

    from ..plots import save_figure

    shown = list(ranking["setting"][:top])
    fig, axes = plt.subplots(
        1, 1 + max(1, len(shown)), figsize=(4.2 * (1 + max(1, len(shown))), 3.8), squeeze=False
    )
    a = axes[0][0]
    if ranking.empty:
        a.text(
            0.02,
            0.5,
            "no searched setting takes more than one value in this study:\n"
            "nothing to rank (the study's search_space names what to search;\n"
            "workflow/config/search.yaml searches MNIST and Fashion-MNIST)",
            ha="left",
            va="center",
            fontsize=9,
            transform=a.transAxes,
        )
        a.set_axis_off()
        for ax in axes[0][1:]:
            ax.set_axis_off()
    else:
        sns.barplot(data=ranking, y="setting", x="variance_share", color="tab:blue", ax=a)
        for i, row in enumerate(ranking.itertuples()):
            if row.spearman == row.spearman:  # not NaN
                x = min(max(row.variance_share, row.chance_share), 0.75) + 0.02
                a.text(x, i, f"rho {row.spearman:+.2f}", va="center", fontsize=7)
        a.scatter(
            ranking["chance_share"],
            range(len(ranking)),
            marker="|",
            s=200,
            color="k",
            zorder=3,
            label="chance level",
        )
        a.legend(fontsize=7, loc="lower right")
        first = ranking.iloc[0]
        a.set(
            xlim=(0, 1),
            xlabel="variance share of the metric",
            ylabel="",
            title=f"(a) {first['trials']} trials, {first['metric']} at epoch {first['epoch']}",
        )
        for ax, key in zip(axes[0][1:], shown, strict=False):
            data = points[points["setting"] == key]
            numeric = data["numeric_value"].notna().all()
            if numeric:
                ax.scatter(data["numeric_value"], data["metric_value"], s=14, alpha=0.7)
                positive = (data["numeric_value"] > 0).all()
                spread = data["numeric_value"].max() / max(data["numeric_value"].min(), 1e-300)
                if positive and spread >= 20:
                    ax.set_xscale("log")
                    ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                sns.stripplot(data=data, x="value", y="metric_value", ax=ax, size=4)
            best = ranking.set_index("setting").loc[key]
            ax.set(
                xlabel=key,
                ylabel=data["metric"].iloc[0],
                title=f"{key}: share {best['variance_share']:.2f}, "
                f"best {_short(best['best_value'])}",
            )
            ax.title.set_fontsize(8)
    fig.suptitle(f"{study}: which searched settings matter (every trial at one epoch)", fontsize=10)
    save_figure(fig, path)


def _short(value: str) -> str:
    """A setting's value as text, a number with 3 significant digits (0.00535, not
    0.005348623082221744)."""
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value
