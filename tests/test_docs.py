"""README.md and docs/ say what the committed tables say, and name tests that exist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sanode.cli import main
from sanode.pipeline.report import ReportError, doc_files, render, render_text, renderers

RENDERERS = renderers()  # the product's and the lab's (entry points)

ROOT = Path(__file__).resolve().parents[1]


def test_committed_docs_agree_with_the_committed_tables():
    stale = render(ROOT, write=False)
    assert not stale, f"out of date: {[str(p.relative_to(ROOT)) for p in stale]}; run sanode report"


def test_every_generated_block_names_a_renderer_and_its_tables():
    blocks = 0
    for path in doc_files(ROOT):
        for match in re.finditer(r"<!-- report:([\w-]+)([^>]*?) -->", path.read_text()):
            blocks += 1
            assert match[1] in RENDERERS, (path, match[1])
            assert match[2].split(), f"{path}: report:{match[1]} names no table"
    assert blocks >= 8  # the README's Sec. V table and the docs' tables


def test_readme_is_an_entry_page_that_links_every_doc():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert max(len(line) for line in text.splitlines()) <= 160
    # the how-to pages stay how-tos; dated measurements go to docs/journal/
    assert len((ROOT / "docs" / "performance.md").read_text().splitlines()) <= 250
    order = [text.index(h) for h in ("## Run it", "## What it gets, against the paper",
                                     "## Read more")]  # fmt: skip
    assert order == sorted(order)
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in text, f"README does not link docs/{page.name}"
        first = [line for line in page.read_text().splitlines() if line.strip()][1]
        assert first.startswith("What you can do with this page"), page.name


def test_every_test_named_in_the_docs_exists():
    """A guarantee (the fault-tolerance table) names the test that checks it: that test must
    exist, in the file named."""
    named = 0
    for path in doc_files(ROOT):
        text = path.read_text()
        for cell in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`((?:, `::\w+`)*)", text):
            file, first, more = cell
            source = (ROOT / file).read_text()
            for name in [first, *re.findall(r"::(\w+)", more)]:
                named += 1
                assert re.search(rf"^def {name}\(", source, re.M), f"{path.name}: {file}::{name}"
    assert named >= 20


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "results" / "x").mkdir(parents=True)
    frame = pd.DataFrame({
        "study": ["mnist", "mnist", "mnist_winner"], "dataset": ["mnist"] * 3,
        "source": ["sanode", "paper", "sanode"], "n": [10000] * 3, "exact": [9000, 9776, 9800],
        "partial": [10, 30, 20], "wrong": [990, 194, 180], "accuracy": [0.901, 0.9806, 0.982],
    })  # fmt: skip
    frame.to_parquet(tmp_path / "results" / "x" / "secV_accuracy.parquet")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# t\n<!-- report:secv mine=results/x/secV_accuracy.parquet -->\nstale\n"
        "<!-- /report -->\nafter\n"
    )
    return tmp_path


def test_report_renders_between_markers_and_check_fails_on_stale_text(tmp_path, capsys):
    root = _tree(tmp_path)
    assert main(["report", "--root", str(root), "--check"]) == 1
    assert "README.md" in capsys.readouterr().err
    assert main(["report", "--root", str(root)]) == 0
    text = (root / "README.md").read_text()
    assert "stale" not in text and text.endswith("<!-- /report -->\nafter\n")
    assert "| mnist | paper (700 epochs) | 10,000 | **98.06 %** | 9,776 / 30 / 194 |" in text
    assert "| mnist | mine | 10,000 | **90.10 %** | 9,000 / 10 / 990 |" in text
    assert "| mnist | mine, mnist_winner | 10,000 | **98.20 %** | 9,800 / 20 / 180 |" in text
    assert main(["report", "--root", str(root), "--check"]) == 0
    # a rerun of the study changes the table: the committed text is stale again
    frame = pd.read_parquet(root / "results/x/secV_accuracy.parquet")
    frame.loc[0, "accuracy"] = 0.95
    frame.to_parquet(root / "results/x/secV_accuracy.parquet")
    assert render(root, write=False) == [root / "README.md"]


def test_report_errors_name_the_file_and_the_block(tmp_path):
    root = _tree(tmp_path)
    with pytest.raises(ReportError, match=r"no file matches 'results/none\.parquet'"):
        render_text("<!-- report:census results/none.parquet -->\n<!-- /report -->", root)
    with pytest.raises(ReportError, match=r"README\.md: unknown block report:nope"):
        render_text("<!-- report:nope a -->\n<!-- /report -->", root, where="README.md")


def test_a_query_with_a_comparison_renders_and_a_block_that_does_not_parse_is_an_error(tmp_path):
    root = _tree(tmp_path)
    block = "<!-- report:columns results/x/secV_accuracy.parquet source,exact where=exact>=9800 -->"
    text = render_text(f"{block}\nold\n<!-- /report -->\n", root)
    assert "| sanode | 9,800 |" in text and "paper" not in text and "old" not in text
    # an opening without its closing marker (or its ' -->' on another line) would stay stale
    with pytest.raises(ReportError, match=r"README\.md, line 2: a report block that does not"):
        render_text(f"intro\n{block}\nno closing marker\n", root, where="README.md")
    with pytest.raises(ReportError, match="line 1"):
        render_text("<!-- report:columns a b\n-->\n<!-- /report -->", root)


def test_time_to_accuracy_renderers_read_the_committed_results(tmp_path):
    root = tmp_path
    bench = ROOT / "results" / "bench"
    for name in ("tta-mnist-float32.json", "tta-mnist-bfloat16.json"):
        (root / "r").mkdir(exist_ok=True)
        shutil.copy(bench / name, root / "r" / name)
    old = json.loads((bench / "tta-mnist-bfloat16.json").read_text())
    table = RENDERERS["tta"](root, ["r/tta-mnist-*.json"])
    assert f"**{100 * old['test']['accuracy']:.2f} %**" in table
    ratio = RENDERERS["tta_ratio"](root, ["r/tta-mnist-float32.json", "r/tta-mnist-bfloat16.json"])
    assert "points" in ratio and ratio.count("|") > 10
    pairs = ["r/tta-mnist-float32.json", "r/tta-mnist-bfloat16.json"] * 2
    lines = RENDERERS["tta_ratio"](root, pairs).strip().splitlines()
    assert len(lines) == 4 and lines[2] == lines[3] == ratio.strip().splitlines()[2]  # a row a pair
    with pytest.raises(ReportError, match="pairs of results"):
        RENDERERS["tta_ratio"](root, pairs[:3])
    # a level only one run reached: a bound from the other run's whole training wall
    level = {"epoch": 3, "wall_s": 30.0}
    for name, levels, wall in (("ref", {}, 100.0), ("new", {"0.960": level}, 50.0)):
        run = {"levels": levels, "train_wall_s": wall, "test": {"accuracy": 0.97},
               "timeline": [{"epoch": 1, "epoch_s": 10.0, "wall_s": 10.0}]}  # fmt: skip
        (root / "r" / f"{name}.json").write_text(json.dumps(run))
    row = RENDERERS["tta_ratio"](root, ["r/ref.json", "r/new.json"]).strip().splitlines()[2]
    assert row.split(" | ")[1:5] == ["1.00", "—", "—", "< 0.30"]
    row = RENDERERS["tta_ratio"](root, ["r/new.json", "r/ref.json"]).strip().splitlines()[2]
    assert row.split(" | ")[4] == "> 3.33"
    # levels=whole_val: the new run's levels on the whole validation split, from its audit
    with pytest.raises(ReportError, match=r"new\.json has no audit; levels=whole_val needs"):
        RENDERERS["tta_ratio"](root, ["r/ref.json", "r/new.json", "levels=whole_val"])
    audited = json.loads((root / "r" / "new.json").read_text())
    audited["agreement"] = {"levels": {"whole_val": {"0.900": level, "0.960": None}}}
    (root / "r" / "audited.json").write_text(json.dumps(audited))
    row = RENDERERS["tta_ratio"](root, ["r/ref.json", "r/audited.json", "levels=whole_val"])
    assert row.strip().splitlines()[2].split(" | ")[1:5] == ["1.00", "< 0.30", "—", "—"]
    with pytest.raises(ReportError, match=r"options are levels=val\|whole_val, got levels=test"):
        RENDERERS["tta_ratio"](root, ["r/ref.json", "r/new.json", "levels=test"])
    with pytest.raises(ReportError, match="match 3 files, not one each"):
        RENDERERS["tta_ratio"](root, ["r/tta-mnist-*.json", "r/tta-mnist-bfloat16.json"])


def test_agreement_renderer_shows_how_a_runs_validation_sits_from_the_whole_splits(tmp_path):
    from sanode.lab.time_to_accuracy import agreement

    timeline = [
        {"epoch": e, "wall_s": 10.0 * e, "val_exact": 9 * e, "val_partial": 0,
         "val_wrong": 100 - 9 * e, "val_accuracy": v, "audit_val_accuracy": w,
         "audit_test_accuracy": t}
        for e, v, w, t in ((1, 0.95, 0.955, 0.96), (2, 0.97, 0.962, 0.958))
    ]  # fmt: skip
    result = {"timeline": timeline, "agreement": agreement(timeline)}
    (tmp_path / "run.json").write_text(json.dumps(result))
    (tmp_path / "plain.json").write_text(json.dumps({"timeline": timeline}))
    lines = RENDERERS["agreement"](tmp_path, ["run.json"]).strip().splitlines()
    assert lines[0].startswith("| run | validation items | audited epochs |")
    assert lines[0].endswith("| first epoch ≥ 0.96 (wall): val / whole val / test |")
    assert lines[2] == ("| `run` | 100 | 2 | 0.65 / 0.80 | 1.10 / 1.20 | 0.45 / 0.50 "
                        "| 2 (20 s) / 2 (20 s) / 1 (10 s) |")  # fmt: skip
    at_95 = RENDERERS["agreement"](tmp_path, ["run.json", "level=0.95"])
    assert at_95.strip().splitlines()[2].endswith("| 1 (10 s) / 1 (10 s) / 1 (10 s) |")
    with pytest.raises(ReportError, match=r"level=0\.955 is not one the audit records"):
        RENDERERS["agreement"](tmp_path, ["run.json", "level=0.955"])
    with pytest.raises(ReportError, match=r"plain\.json has no audit; run it with --audit"):
        RENDERERS["agreement"](tmp_path, ["plain.json"])


def test_trials_renderer_lists_each_trial_best_first(tmp_path):
    """report:trials: one row per trial (not per epoch), best validation H first, its searched
    settings, epochs run and last validation H; an unsearched setting is a clear error."""
    rows = []
    for trial, values, loss in (("a", [0.5, 0.6], "mse"), ("b", [0.7, 0.9, 0.8], "sign_margin")):
        for epoch, h in enumerate(values, 1):
            rows.append(
                {
                    "study": "mnist",
                    "trial_id": trial,
                    "epoch": epoch,
                    "val_accuracy": h,
                    "param_loss": loss,
                    "param_ema_decay": None if trial == "a" else 0.999,
                }
            )
    pd.DataFrame(rows).to_parquet(tmp_path / "trials.parquet")
    table = RENDERERS["trials"](tmp_path, ["trials.parquet", "settings=loss,ema_decay"])
    lines = table.strip().splitlines()
    assert lines[0] == "| study | trial | loss | ema_decay | epochs | best val H | last val H |"
    assert lines[2] == "| mnist | `b` | sign_margin | 0.999 | 3 | 0.900 | 0.800 |"
    assert lines[3] == "| mnist | `a` | mse | null | 2 | 0.600 | 0.600 |"
    only_b = RENDERERS["trials"](tmp_path, ["trials.parquet", "settings=loss", "study=other"])
    assert len(only_b.strip().splitlines()) == 2  # the header alone
    with pytest.raises(ReportError, match=r"settings \['lr'\] were not searched"):
        RENDERERS["trials"](tmp_path, ["trials.parquet", "settings=lr"])


def test_sensitivity_renderer_prints_words_whole_numbers_short_and_null(tmp_path):
    """report:sensitivity: a best value that is a word stays whole, a number keeps 4
    significant digits, a null choice (NaN in the table) reads ``null``."""
    common = {"study": "fashion", "variance_share": 0.5, "chance_share": 0.1, "spearman": 0.2,
              "best_metric": 0.743, "trials": 16}  # fmt: skip
    rows = [
        {**common, "rank": 1, "setting": "loss", "best_value": "sign_margin"},
        {**common, "rank": 2, "setting": "lr", "best_value": "0.0072238"},
        {**common, "rank": 3, "setting": "ema_decay", "best_value": "nan"},
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "sensitivity.parquet")
    lines = RENDERERS["sensitivity"](tmp_path, ["sensitivity.parquet"]).splitlines()
    assert "| sign_margin |" in lines[2]
    assert "| 0.007224 |" in lines[3]
    assert "| null |" in lines[4]


def test_seeds_renderer_joins_a_recipes_seeds_and_refuses_another_recipe(tmp_path):
    """report:seeds: the time-to-accuracy runs of a recipe and the pipeline's kept model of it
    are one row per data set (test H by seed, mean, spread, rollbacks); a run of other settings
    or a repeated seed is an error, not a row."""
    from sanode.config import TrainConfig
    from sanode.files import save_checkpoint

    recipe = TrainConfig(dataset="mnist", loss="sign_margin", batch_size=100, epochs=40,
                         train_on_validation=True)  # fmt: skip
    save_checkpoint(tmp_path / "models" / "mnist_winner.pt",
                    {"config": recipe.to_dict(), "history": [{"epoch": 1}]})  # fmt: skip
    rows = [{"study": study, "dataset": "mnist", "eps_test": eps, "train_seed": 0,
             "accuracy": acc, "exact": round(acc * 1e4), "partial": 0,
             "wrong": 10**4 - round(acc * 1e4)}
            for study, eps, acc in (("mnist_winner", 0.0, 0.9845), ("mnist_winner", 0.1, 0.88),
                                    ("mnist", 0.0, 0.9716))]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "accuracy.parquet")

    def result(name: str, seed: int, accuracy: float, timeline: list, **changes) -> None:
        cfg = recipe.replace(seed=seed, threads=1, mirror="/m", **changes).to_dict()
        test = {"accuracy": accuracy, "exact": round(accuracy * 1e4), "partial": 0,
                "wrong": 10**4 - round(accuracy * 1e4)}  # fmt: skip
        (tmp_path / "r").mkdir(exist_ok=True)
        (tmp_path / "r" / f"{name}.json").write_text(json.dumps(
            {"dataset": "mnist", "config": cfg, "test": test, "timeline": timeline}))  # fmt: skip

    result("mnist-winner-seed1", 1, 0.9830, [{"epoch": 1}, {"epoch": 2, "rollback": 1.0}])
    result("mnist-winner-seed2", 2, 0.9851, [{"epoch": 1}])
    args = ["r/mnist-winner-seed*.json", "pipeline=accuracy.parquet", "models=models"]
    table = RENDERERS["seeds"](tmp_path, args).splitlines()
    assert len(table) == 3  # header, rule, one data set (the search's own row has no model)
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[0] == "mnist" and cells[2] == "0, 1, 2"
    assert cells[3] == "98.45 % / 98.30 % / 98.51 %"
    assert cells[4] == "**98.42 %**" and cells[5] == "0.21 points" and cells[6] == "98.30 %"
    assert cells[7] == "1"

    result("mnist-winner-seed3", 3, 0.97, [], lr=0.02)
    with pytest.raises(ReportError, match=r"mnist-winner-seed3.*settings \['lr'\] differ"):
        RENDERERS["seeds"](tmp_path, ["r/mnist-winner-seed3.json", *args[1:]])
    result("mnist-winner-seed3", 2, 0.97, [])
    with pytest.raises(ReportError, match=r"seeds .* repeat"):
        RENDERERS["seeds"](tmp_path, args)
    # a run whose seed 1 stalled trained seed 2: the seed it comes from is the one counted
    result("mnist-winner-seed3", 3, 0.97, [])
    record = json.loads((tmp_path / "r" / "mnist-winner-seed1.json").read_text())
    record.update(trained_seed=2, stalled_seeds=[1])
    (tmp_path / "r" / "mnist-winner-seed1.json").write_text(json.dumps(record))
    with pytest.raises(ReportError, match=r"seeds \[0, 2, 2, 3\] repeat"):
        RENDERERS["seeds"](tmp_path, args)
    # a kept model stands for one row of its study, not for several seeds of it
    pd.DataFrame([*rows, {**rows[0], "train_seed": 1}]).to_parquet(tmp_path / "accuracy.parquet")
    with pytest.raises(ReportError, match="'mnist_winner' has several noise-free rows"):
        RENDERERS["seeds"](tmp_path, args)
