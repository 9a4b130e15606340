"""The product's report renderers: the Sec. V table, the search's sensitivity and trials, the
census, the noise grid and its robustness answer, any table's columns, the stage times (the
framework: :mod:`sanode.pipeline.report`; the lab's renderers: :mod:`sanode.lab.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .report_format import (
    ReportError,
    _buckets,
    _cell,
    _files,
    _frame,
    _int,
    _paths_and_options,
    _pct,
    _table,
)
from .selection import plain_value


def secv(root: Path, args: list[str]) -> str:
    """Sec. V: test H of each model beside the paper's; ARG: ``label=path`` pairs of
    ``secV_accuracy.parquet`` tables, or a bare ``label`` for the published
    ``results/<label>/tables/secV_accuracy.parquet`` (the paper's rows are taken from the
    first). A study not named after its data set (a search's retrained winner,
    ``mnist_winner``) is labelled ``label, study``."""
    sources = []
    for arg in args:
        label, _, pattern = arg.partition("=")
        pattern = pattern or f"results/{label}/tables/secV_accuracy.parquet"
        sources += [(label, path) for path in _files(root, [pattern])]
    rows: dict[str, list[list[str]]] = {}
    paper_done: set[str] = set()
    for label, path in sources:
        frame = pd.read_parquet(path)
        for _, r in frame.iterrows():
            if r["source"] == "paper":
                if r["dataset"] in paper_done:
                    continue
                paper_done.add(r["dataset"])
                name = "paper (700 epochs)"
            else:
                name = label if r["study"] == r["dataset"] else f"{label}, {r['study']}"
            rows.setdefault(r["dataset"], []).append(
                [r["dataset"], name, _int(r["n"]), f"**{_pct(r['accuracy'])}**", _buckets(r)]
            )
    body = [row for dataset in rows for row in sorted(rows[dataset], key=_paper_first)]
    return _table(["data set", "model", "test images", "H", "exact / partial / wrong"], body)


def _paper_first(row: list[str]) -> int:
    return 0 if row[1].startswith("paper") else 1


def _best_value(value: Any) -> str:
    """A setting's best value as the table shows it: numbers to 4 significant digits, a null
    choice (stored as NaN) as ``null``, words whole."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "null" if number != number else f"{number:.4g}"


def sensitivity(root: Path, args: list[str]) -> str:
    """The search's sensitivity table (ARG: sensitivity.parquet): settings by variance share."""
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, args))
    body = [
        [
            r["study"],
            str(int(r["rank"])),
            f"`{r['setting']}`",
            f"{r['variance_share']:.2f}",
            f"{r['chance_share']:.2f}",
            f"{r['spearman']:+.2f}",
            _best_value(r["best_value"]),
            f"{r['best_metric']:.3f}",
            str(int(r["trials"])),
        ]
        for _, r in frame.sort_values(["study", "rank"]).iterrows()
    ]
    header = [
        "study",
        "rank",
        "setting",
        "variance share",
        "chance share",
        "Spearman",
        "best value",
        "best val H",
        "trials",
    ]
    return _table(header, body)


def _setting(value: Any) -> Any:
    """A searched value as the search space wrote it (``null`` for a null choice)."""
    value = plain_value(value)
    return "null" if value is None else value


TRIAL_SETTINGS = (
    "loss",
    "batch_size",
    "lr",
    "t_train",
    "dt",
    "t_train_final",
    "augment_shift",
    "ema_decay",
)


def trials(root: Path, args: list[str]) -> str:
    """A search's trials, best first (ARG: trials.parquet [settings=a,b,...] [study=NAME]):
    each trial's searched settings (default :data:`TRIAL_SETTINGS`), the epochs it ran (ASHA
    stops the poor ones), its best and its last validation H."""
    paths, options = _paths_and_options(args)
    keys = options["settings"].split(",") if "settings" in options else list(TRIAL_SETTINGS)
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, paths))
    if "study" in options:
        frame = frame[frame["study"] == options["study"]]
    missing = [k for k in keys if f"param_{k}" not in frame]
    if missing:
        raise ReportError(
            f"settings {missing} were not searched; searched: "
            f"{sorted(c[6:] for c in frame if c.startswith('param_'))}"
        )
    frame = frame.sort_values("epoch")
    per_trial = (
        frame.groupby(["study", "trial_id"], sort=False)
        .agg(
            epochs=("epoch", "max"),
            best=("val_accuracy", "max"),
            last=("val_accuracy", "last"),
            **{k: (f"param_{k}", "first") for k in keys},
        )
        .reset_index()
    )
    per_trial = per_trial.sort_values(["study", "best"], ascending=[True, False])
    body = [
        [
            r["study"],
            f"`{r['trial_id']}`",
            *(_cell(_setting(r[k])) for k in keys),
            str(int(r["epochs"])),
            f"{r['best']:.3f}",
            f"{r['last']:.3f}",
        ]
        for _, r in per_trial.iterrows()
    ]
    return _table(["study", "trial", *keys, "epochs", "best val H", "last val H"], body)


def census(root: Path, args: list[str]) -> str:
    """Where inputs that are not digits flow (ARG: census.parquet)."""
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, args))
    body = [
        [
            r["study"],
            f"{r['eps_train']:g}",
            r["source"],
            _int(r["n"]),
            _int(r["planted"]),
            _int(r["spurious"]),
            _int(r["not_converged"]),
            _int(r["distinct_spurious"]),
            _pct(r["planted_fraction"], 1),
        ]
        for _, r in frame.iterrows()
    ]
    header = [
        "study",
        "ε_train",
        "inputs",
        "n",
        "planted attractor",
        "spurious fixed point",
        "not converged",
        "distinct spurious",
        "planted share",
    ]
    return _table(header, body)


def noise(root: Path, args: list[str]) -> str:
    """A metric of each study's models over the test-noise grid, mean over the training seeds
    and noise draws (ARG: accuracy.parquet [metric=accuracy|m_f|...] [study=NAME])."""
    paths, options = _paths_and_options(args)
    metric = options.get("metric", "accuracy")
    frame = pd.concat(pd.read_parquet(p) for p in _files(root, paths))
    if "study" in options:
        frame = frame[frame["study"] == options["study"]]
    grid = frame.groupby(["study", "eps_train", "eps_test"])[metric].mean().unstack("eps_test")
    fmt = (lambda v: _pct(v, 1)) if metric.endswith("accuracy") else (lambda v: f"{v:.3f}")
    header = ["study", "ε_train", *(f"ε_test {e:g}" for e in grid.columns)]
    body = [[study, f"{eps:g}", *(fmt(v) for v in row)] for (study, eps), row in grid.iterrows()]
    return _table(header, body)


def robustness(root: Path, args: list[str]) -> str:
    """The noise grid on real data, per study: SA-nODE's best H and nearest-attractor accuracy
    at one test-noise level beside the equal-size MLP and the logistic regression trained at
    the same noise, the clean-accuracy cost, the most robust eps_train, where it leads; then
    one sentence per study saying it (ARG: accuracy.parquet baselines.parquet, or the tables
    folder holding both, [at=0.3] [line=LINK]: with ``line``, one sentence for all studies,
    linking to LINK)."""
    from .analyses.baselines import robustness_summary

    paths, options = _paths_and_options(args)
    if len(paths) == 1:  # the tables folder holding both
        paths = [f"{paths[0].rstrip('/')}/{name}.parquet" for name in ("accuracy", "baselines")]
    if len(paths) != 2:
        raise ReportError(
            "robustness takes accuracy.parquet and baselines.parquet (or the tables folder "
            "holding both), then [at=EPS] [line=LINK]"
        )
    accuracy = pd.read_parquet(_files(root, paths[:1])[0])
    baselines = pd.read_parquet(_files(root, paths[1:])[0])
    at = float(options.get("at", 0.3))
    studies = sorted(accuracy["study"].unique())
    if "line" in options:
        return _robustness_line(
            [robustness_summary(baselines, accuracy, s, at) for s in studies], at, options["line"]
        )
    rows, lines = [], []
    for study in studies:
        s = robustness_summary(baselines, accuracy, study, at)
        rows.append(
            [
                study,
                f"{_pct(s['h'], 1)} ({s['h_eps_train']:g})",
                f"{_pct(s['nearest'], 1)} ({s['nearest_eps_train']:g})",
                f"{_pct(s['mlp'], 1)} ({s['mlp_eps_train']:g})",
                f"{_pct(s['logistic'], 1)} ({s['logistic_eps_train']:g})",
                f"{100 * s['clean_cost']:+.1f} pts",
                f"{s['most_robust']:g} ({_pct(s['most_robust_mean_h'], 1)})",
                f"{s['leads']} / {s['trails']} of {s['cells']}",
            ]
        )
        gap = 100 * (s["nearest"] - s["mlp"])
        where = (
            f"at every ε_train from ε_test {s['lead_from']:g} on"
            if s["lead_from"] is not None
            else "at no test-noise level for every ε_train"
        )
        smallest = accuracy.loc[accuracy["study"] == study, "eps_train"].min()
        levels = sorted(accuracy.loc[accuracy["study"] == study, "eps_test"].unique())
        if s["best_lead"] is None:
            leads_at = " It leads nowhere."
        else:
            gap_top, e_top, t_top = s["best_lead"]
            cells = "; ".join(
                f"{e:g}: {_runs(ts, levels)}" for e, ts in sorted(s["lead_cells"].items())
            )
            leads_at = (
                f" It leads at (ε_train: ε_test) {cells}; its largest lead is "
                f"{100 * gap_top:+.1f} points at ε_train {e_top:g}, ε_test {t_top:g}."
            )
        lines.append(
            f"- **{study}**: at ε_test {at:g} the attractor classifier's nearest-attractor "
            f"accuracy peaks at {_pct(s['nearest'], 1)} (ε_train {s['nearest_eps_train']:g}) "
            f"against the MLP's best {_pct(s['mlp'], 1)} (ε_train {s['mlp_eps_train']:g}): "
            f"it {'leads' if gap > 0 else 'trails'} by {abs(gap):.1f} points. Over the grid it "
            f"leads in {s['leads']} and trails in {s['trails']} of {s['cells']} (ε_train, "
            f"ε_test) cells, {where}.{leads_at} The ε_train of its best H there "
            f"({s['h_eps_train']:g}) changes its clean H by {100 * s['clean_cost']:+.1f} points "
            f"against ε_train {smallest:g}; the most robust ε_train over all test noise is "
            f"{s['most_robust']:g}."
        )
    header = [
        "study",
        f"SA-nODE H at ε_test {at:g} (ε_train)",
        "nearest attractor (ε_train)",
        "MLP (ε_train)",
        "logistic (ε_train)",
        "clean H cost of that ε_train",
        "most robust ε_train (mean H)",
        "nearest vs MLP: leads / trails",
    ]
    return _table(header, rows) + "\n\n" + "\n".join(lines)


def _runs(values: list[float], levels: list[float]) -> str:
    """``values`` (a subset of the sorted grid ``levels``) as runs of neighbouring levels:
    [0.2, 0.3, 0.4, 0.9] on 0..1 by 0.1 -> "0.2–0.4, 0.9"."""
    index = [min(range(len(levels)), key=lambda i: abs(levels[i] - v)) for v in values]
    runs: list[list[int]] = []
    for i in sorted(index):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(
        f"{levels[r[0]]:g}" if len(r) == 1 else f"{levels[r[0]]:g}–{levels[r[-1]]:g}" for r in runs
    )


def _robustness_line(summaries: list[dict], at: float, link: str) -> str:
    """The one-sentence form (``line=LINK``, the README's pointer to the full answer): each
    study's best nearest-attractor accuracy at ``eps_test = at`` beside the MLP's best there,
    wrapped at 100 columns."""
    import textwrap

    ours = " and ".join(f"{_pct(s['nearest'], 1)} on {s['study']}" for s in summaries)
    theirs = " and ".join(_pct(s["mlp"], 1) for s in summaries)
    text = (
        f"Under pixel noise ([robustness on real data]({link})): at ε_test {at:g} the attractor "
        f"classifier's best nearest-attractor accuracy is {ours}, against {theirs} for the MLP "
        "of its size trained at the same noise."
    )
    # never break between a number and its unit
    glued = textwrap.fill(
        text.replace(" %", "\x00%"), width=100, break_long_words=False, break_on_hyphens=False
    )
    return glued.replace("\x00", " ")


def columns(root: Path, args: list[str]) -> str:
    """Any committed table (Parquet, or a JSON list of rows), some of its columns: ARG
    ``PATH COL,COL,...`` and, in this order when given, ``key=NAME`` (a JSON file's list under
    that key), ``where=<pandas query>`` (no spaces; ``&`` and ``|`` combine),
    ``group=COL,...`` (one row per group: the mean of the other listed columns) and
    ``sort=COL,...``."""
    if len(args) < 2:
        raise ReportError("columns takes a table and a comma-separated column list")
    cols = args[1].split(",")
    options = dict(option.partition("=")[::2] for option in args[2:])
    unknown = sorted(set(options) - {"where", "group", "sort", "key"})
    if unknown:
        raise ReportError(f"columns: unknown option(s) {unknown} (key=, where=, group=, sort=)")
    frame = pd.concat(_frame(p, options.get("key")) for p in _files(root, args[:1]))
    group = options["group"].split(",") if "group" in options else []
    missing = [c for c in {*cols, *group} if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{args[0]} has no column(s) {sorted(missing)}; it has {list(frame.columns)}"
        )
    if "where" in options:
        frame = frame.query(options["where"])
    if group:
        values = [c for c in cols if c not in group]
        frame = frame.groupby(group, as_index=False)[values].mean()
    if "sort" in options:
        frame = frame.sort_values(options["sort"].split(","))
    return _table(cols, ([_cell(v) for v in row] for row in frame[cols].itertuples(index=False)))


def stage_times(root: Path, args: list[str]) -> str:
    """Wall time of every benchmarked job of a run (ARG: the ``benchmarks`` folder of a run:
    Snakemake's ``<rule>[/<wildcards>].tsv`` files) and their sum."""
    (folder,) = _files(root, args[:1])
    body, total = [], 0.0
    for path in sorted(folder.rglob("*.tsv")):
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
        total += seconds
        job = path.relative_to(folder).with_suffix("").as_posix()
        rule, _, wildcards = job.partition("/")
        body.append([f"`{rule}`", wildcards.replace("/", ", ") or "—", f"{seconds:,.1f} s"])
    body.append(["**sum**", "", f"**{total / 60:,.1f} min**"])
    return _table(["rule", "job", "wall time"], body)
