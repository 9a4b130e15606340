"""Time to accuracy's audit: every epoch scored on the whole validation and test splits,
outside the timed wall, and how the run's own validation agrees with them."""

import json

import pytest

from sanode.cli import main
from sanode.lab import time_to_accuracy as tta


def test_annotate_leaves_the_audit_out_of_the_wall_time(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(tta.time, "perf_counter", lambda: now[0])
    timeline = tta.Timeline(tmp_path / "timeline.json", resume=False)
    now[0] = 10.0
    timeline.record(1, {"val_accuracy": 0.5})
    now[0] = 14.0  # four seconds of audit
    timeline.annotate({"audit_val_accuracy": 0.6})
    now[0] = 24.0
    timeline.record(2, {"val_accuracy": 0.7})
    rows = json.loads((tmp_path / "timeline.json").read_text())
    assert rows[0] == {"val_accuracy": 0.5, "epoch_s": 10.0, "wall_s": 10.0,
                       "audit_val_accuracy": 0.6, "audit_s": 4.0}  # fmt: skip
    assert rows[1]["epoch_s"] == 10.0 and rows[1]["wall_s"] == 20.0  # not 14 / 24


def test_agreement_compares_the_runs_validation_with_the_whole_splits():
    rows = [
        {"epoch": 1, "wall_s": 10.0, "val_accuracy": 0.90, "audit_val_accuracy": 0.92,
         "audit_test_accuracy": 0.91},
        {"epoch": 2, "wall_s": 20.0, "val_accuracy": 0.96, "audit_val_accuracy": 0.95,
         "audit_test_accuracy": 0.965},
        {"epoch": 3, "wall_s": 30.0, "val_accuracy": 0.97},  # not audited (a resumed epoch)
    ]  # fmt: skip
    agree = tta.agreement(rows)
    assert agree["epochs"] == 2
    assert agree["val_vs_whole_val"] == pytest.approx({"mean_points": 1.5, "max_points": 2.0})
    assert agree["val_vs_test"] == pytest.approx({"mean_points": 0.75, "max_points": 1.0})
    assert agree["whole_val_vs_test"] == pytest.approx({"mean_points": 1.25, "max_points": 1.5})
    assert agree["levels"]["val"]["0.960"] == {"epoch": 2, "wall_s": 20.0}
    assert agree["levels"]["whole_val"]["0.950"] == {"epoch": 2, "wall_s": 20.0}
    assert agree["levels"]["whole_val"]["0.960"] is None
    assert agree["levels"]["test"]["0.900"] == {"epoch": 1, "wall_s": 10.0}
    assert tta.agreement([{"epoch": 1, "wall_s": 1.0, "val_accuracy": 0.5}]) is None


TINY = ["time-to-accuracy", "--dataset", "letters", "--letters-copies", "20", "--batch-size",
        "25", "--epochs", "3", "--lr", "0.03", "--t-train", "5.5", "--t-eval", "20",
        "--t-test", "20", "--target", "0.3", "--quiet", "--no-compare-dtypes",
        "--audit"]  # fmt: skip


def test_the_audit_of_the_whole_validation_split_repeats_its_validation(tmp_path, capsys):
    # validating on the whole split with the same settings: the audit must score exactly the
    # run's own validation H, and the last epoch's test score must be the final test H
    assert main([*TINY, "--out", str(tmp_path / "r")]) == 0
    assert "audit of 3 epochs: validation vs whole validation split 0.00 points" in (
        capsys.readouterr().out
    )
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    rows = result["timeline"]
    assert [r["audit_val_accuracy"] for r in rows] == [r["val_accuracy"] for r in rows]
    assert all(r["audit_s"] > 0 for r in rows)
    assert rows[-1]["audit_test_accuracy"] == result["test"]["accuracy"]
    assert result["agreement"]["val_vs_whole_val"]["max_points"] == 0.0


def test_the_audit_measures_how_far_a_validation_subset_sits(tmp_path):
    # letters: 10 validation items (2 a class); one a class validates, the audit scores all 10
    assert main([*TINY, "--val-per-class", "1", "--out", str(tmp_path / "r")]) == 0
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    for row in result["timeline"]:
        assert row["val_exact"] + row["val_partial"] + row["val_wrong"] == 5
        whole = row["audit_val_accuracy"] * 10  # a share of 10 items
        assert whole == pytest.approx(round(whole))
    gaps = [abs(r["val_accuracy"] - r["audit_val_accuracy"]) * 100 for r in result["timeline"]]
    assert result["agreement"]["val_vs_whole_val"]["max_points"] == pytest.approx(max(gaps))
