"""The robustness answer (docs/results.md "Robustness on real data") from the tables alone:
sanode.pipeline.analyses.baselines.robustness_summary and the report:robustness block."""

from __future__ import annotations

import pandas as pd
import pytest

from sanode.pipeline.analyses.baselines import advantage_table, robustness_summary
from sanode.pipeline.report import render_text

LEVELS = (0.0, 0.3, 0.6)
# (eps_train) -> per eps_test: SA-nODE H, its nearest-attractor accuracy, MLP, logistic
GRID = {
    0.0: ((0.97, 0.60, 0.30), (0.99, 0.62, 0.32), (0.98, 0.70, 0.20), (0.90, 0.50, 0.10)),
    0.3: ((0.95, 0.80, 0.50), (0.96, 0.82, 0.52), (0.97, 0.75, 0.40), (0.88, 0.60, 0.30)),
}


def tables(study: str = "mnist") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two draws a cell, +-0.01 around the values above (their mean is the value)."""
    ours, base = [], []
    for eps_train, (h, near, mlp, logistic) in GRID.items():
        for i, eps_test in enumerate(LEVELS):
            for seed, d in ((0, -0.01), (1, 0.01)):
                ours.append({"study": study, "eps_train": eps_train, "eps_test": eps_test,
                             "noise_seed": seed, "is_best": True, "accuracy": h[i] + d,
                             "nearest_accuracy": near[i] + d, "m_f": h[i]})  # fmt: skip
                # a second seed's model, not selected: never counted
                ours.append({**ours[-1], "is_best": False, "accuracy": 0.0,
                             "nearest_accuracy": 0.0})  # fmt: skip
                for kind, acc in (("mlp", mlp[i]), ("logistic", logistic[i])):
                    base.append({"study": study, "model": kind, "eps_train": eps_train,
                                 "eps_test": eps_test, "noise_seed": seed,
                                 "accuracy": acc + d})  # fmt: skip
    return pd.DataFrame(ours), pd.DataFrame(base)


def test_the_summary_reads_the_answer_off_the_tables():
    accuracy, baselines = tables()
    s = robustness_summary(baselines, accuracy, "mnist", at=0.3)
    assert s["h"] == pytest.approx(0.80) and s["h_eps_train"] == 0.3
    assert s["nearest"] == pytest.approx(0.82) and s["nearest_eps_train"] == 0.3
    assert s["mlp"] == pytest.approx(0.75) and s["mlp_eps_train"] == 0.3
    assert s["logistic"] == pytest.approx(0.60) and s["logistic_eps_train"] == 0.3
    assert s["clean_cost"] == pytest.approx(0.95 - 0.97)  # noise training costs clean H
    assert s["most_robust"] == 0.3 and s["most_robust_mean_h"] == pytest.approx(0.75)
    # nearest minus MLP: +1, -8, +12 (eps_train 0); -1, +7, +12 (eps_train 0.3) points
    assert (s["leads"], s["trails"], s["cells"]) == (4, 2, 6)
    assert s["lead_from"] == 0.6
    assert s["lead_cells"] == {0.0: [0.0, 0.6], 0.3: [0.3, 0.6]}
    gap, _, at_test = s["best_lead"]
    assert gap == pytest.approx(0.12) and at_test == 0.6
    table = advantage_table(baselines, accuracy, "mnist")
    assert table.set_index(["eps_train", "eps_test"]).loc[(0.0, 0.3), "nearest"] == pytest.approx(
        -0.08
    )
    with pytest.raises(ValueError, match=r"not scored at eps_test 0\.5"):
        robustness_summary(baselines, accuracy, "mnist", at=0.5)
    with pytest.raises(ValueError, match="no rows of study 'fashion'"):
        robustness_summary(baselines, accuracy, "fashion")


def test_the_report_block_renders_a_row_and_a_sentence_per_study(tmp_path):
    a1, b1 = tables("mnist")
    a2, b2 = tables("fashion")
    pd.concat([a1, a2]).to_parquet(tmp_path / "accuracy.parquet")
    pd.concat([b1, b2]).to_parquet(tmp_path / "baselines.parquet")
    text = ("<!-- report:robustness accuracy.parquet baselines.parquet at=0.3 -->\n"
            "<!-- /report -->\n")  # fmt: skip
    out = render_text(text, tmp_path)
    assert "| mnist | 80.0 % (0.3) | 82.0 % (0.3) | 75.0 % (0.3) | 60.0 % (0.3) |" in out
    assert "-2.0 pts" in out and "4 / 2 of 6" in out
    assert "- **fashion**: at ε_test 0.3" in out and "it leads by 7.0 points" in out
    assert "from ε_test 0.6 on" in out
    assert "It leads at (ε_train: ε_test) 0: 0, 0.6; 0.3: 0.3–0.6; its largest lead is +12.0" in out
    assert render_text(out, tmp_path) == out  # rendering again changes nothing


def test_the_readme_line_points_to_the_answer_with_both_studies_numbers(tmp_path):
    a1, b1 = tables("mnist")
    a2, b2 = tables("fashion")
    pd.concat([a1, a2]).to_parquet(tmp_path / "accuracy.parquet")
    pd.concat([b1, b2]).to_parquet(tmp_path / "baselines.parquet")
    text = "<!-- report:robustness . at=0.3 line=docs/results.md#robustness -->\n<!-- /report -->\n"
    out = render_text(text, tmp_path)
    body = " ".join(out.splitlines()[1:-1])
    assert "(docs/results.md#robustness)" in body
    assert "82.0 % on fashion and 82.0 % on mnist, against 75.0 % and 75.0 %" in body
    assert max(len(line) for line in out.splitlines()[1:-1]) <= 100
    assert render_text(out, tmp_path) == out
