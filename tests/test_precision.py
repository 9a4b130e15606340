"""The precision value and ``auto`` by measurement (sanode.core.precision), with scripted
timings: the slower candidate is never chosen, the cache is reused, a read-only cache folder
still works, CUDA takes its own branch, old setting names load with one deprecation line."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from sanode import TrainConfig, block_patterns
from sanode.config import ConfigError
from sanode.core import precision
from sanode.core.products import Products


def scripted(times: dict[str, float], calls: list | None = None):
    """A ``measure`` that answers ``times`` (unlisted candidates: 1.0) and logs its calls."""

    def measure(kind, n, batch, dtype, labels):
        if calls is not None:
            calls.append((kind, n, batch, dtype, tuple(labels)))
        return {k: times.get(k, 1.0) for k in labels}

    return measure


def resolve(measure, cache, **kw):
    args = dict(loop="float32", coupling_dtype="float32", n=784, batch=200, eval_batch=2000)
    args.update(kw)
    train = args.pop("train", "auto")
    evaluation = args.pop("evaluation", None)
    return precision.resolve(train, evaluation, measure=measure, cache_dir=cache, **args)


@pytest.fixture
def all_candidates(monkeypatch):
    """Every product and LAPACK candidate available, whatever this machine has."""
    monkeypatch.setattr(precision, "available", lambda products, route: True)
    monkeypatch.setattr(precision, "lapack_available", lambda route, dtype: True)


@pytest.mark.parametrize(
    "times, want",
    [
        ({"float32/torch": 1.0, "float32/onednn": 0.5, "bfloat16/onednn": 2.0,
          "bfloat16/torch": 2.2}, ("float32", "onednn")),
        ({"float32/torch": 1.0, "float32/onednn": 1.0, "bfloat16/onednn": 0.3,
          "bfloat16/torch": 0.4}, ("bfloat16", "onednn")),
        # an AVX512F CPU that emulates bfloat16: 4x slower products, never chosen
        ({"float32/torch": 0.27, "float32/onednn": 0.30, "bfloat16/onednn": 0.70,
          "bfloat16/torch": 1.1}, ("float32", "torch")),
    ],
)  # fmt: skip
def test_auto_takes_the_fastest_candidate(times, want, tmp_path, all_candidates):
    got = resolve(scripted(times), tmp_path).train
    assert (got.name, got.route) == want
    slowest = max(times, key=lambda k: times[k])
    assert f"{got.name}/{got.route}" != slowest


def test_a_preferred_candidate_within_the_margin_stays_and_the_choice_is_never_slow(
    tmp_path, all_candidates
):
    """float32/torch within 5 % of a faster bfloat16 stays chosen (noise does not flip a
    choice between equals); the choice is always >= 0.95 of the fastest."""
    times = {"float32/torch": 1.0, "float32/onednn": 1.2, "bfloat16/onednn": 0.97,
             "bfloat16/torch": 1.5}  # fmt: skip
    got = resolve(scripted(times), tmp_path).train
    assert (got.name, got.route) == ("float32", "torch")
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        t = dict(zip(times, (0.5 + torch.rand(4, generator=gen)).tolist(), strict=True))
        p = resolve(scripted(t), tmp_path / str(seed)).train
        assert min(t.values()) / t[f"{p.name}/{p.route}"] >= 0.95


def test_explicit_products_are_kept_and_only_their_route_is_measured(tmp_path, all_candidates):
    times = {"float32/torch": 1.0, "float32/onednn": 2.0, "bfloat16/onednn": 0.1,
             "bfloat16/torch": 0.2}  # fmt: skip
    p = resolve(scripted(times), tmp_path, train="float32", evaluation="bfloat16x2")
    assert (p.train.name, p.train.route) == ("float32", "torch")  # bfloat16 was faster
    assert (p.eval.name, p.eval.route) == ("bfloat16x2", "onednn")
    forced = resolve(scripted(times), tmp_path, train="float32", gemm="onednn")
    assert forced.train.route == "onednn"
    wide = resolve(scripted(times), tmp_path, train="auto", loop="float64",
                   coupling_dtype="float64")  # fmt: skip
    assert (wide.train.name, wide.train.route) == ("float64", "torch")


def test_lapack_is_measured_too(tmp_path, all_candidates):
    p = resolve(scripted({"torch": 2.0, "openblas": 1.0}), tmp_path)
    assert p.lapack == "openblas"
    assert resolve(scripted({"torch": 1.0, "openblas": 2.0}), tmp_path / "b").lapack == "torch"
    assert resolve(scripted({}), tmp_path / "c", lapack="torch").lapack == "torch"


def test_a_cached_answer_is_reused(tmp_path, all_candidates):
    calls: list = []
    first = resolve(scripted({"bfloat16/onednn": 0.1}, calls), tmp_path)
    # the training batch, the evaluation batch (its route), A's solves: one measurement each
    assert first.source == "measured"
    assert sorted((c[0], c[2]) for c in calls) == [("lapack", 784), ("products", 200),
                                                   ("products", 2000)]  # fmt: skip
    calls.clear()
    again = resolve(scripted({"bfloat16/onednn": 9.0}, calls), tmp_path)  # would change it
    assert calls == [] and again.source == "cache"
    assert again.train == first.train and again.train.route == first.train.route
    data = json.loads((tmp_path / precision.CACHE_FILE).read_text())
    assert data["format"] == precision.CACHE_FORMAT and data["entries"]
    # another shape is another key: measured
    resolve(scripted({}, calls), tmp_path, n=49)
    assert calls


def test_a_read_only_cache_folder_still_works(tmp_path, all_candidates, monkeypatch):
    """A folder that refuses writes (mode 0500; as root, where modes do not stop writes, a
    refused temporary file): the choice is made all the same, measured each time."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:

        def refused(*args, **kwargs):
            raise PermissionError(13, "Read-only file system")

        from sanode.core import calibration

        monkeypatch.setattr(calibration.tempfile, "mkstemp", refused)
    try:
        calls: list = []
        for _ in range(2):
            p = resolve(scripted({"float32/onednn": 0.1}, calls), folder)
            assert (p.train.name, p.train.route) == ("float32", "onednn")
        assert len(calls) == 6  # nothing cached: measured both times
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_an_unwritable_or_corrupt_cache_means_measuring_again(tmp_path, all_candidates):
    """The cache path is a file's child (no folder can be made there), then a corrupt file."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls: list = []
    for _ in range(2):
        p = resolve(scripted({"bfloat16/torch": 0.1}, calls), blocker / "cache")
        assert (p.train.name, p.train.route) == ("bfloat16", "torch")
    assert len(calls) >= 4
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / precision.CACHE_FILE).write_text("{not json")
    calls.clear()
    resolve(scripted({}, calls), tmp_path / "c")
    assert calls
    json.loads((tmp_path / "c" / precision.CACHE_FILE).read_text())  # rewritten whole


def test_the_environment_names_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "here"))
    assert precision.cache_dir() == tmp_path / "here"
    monkeypatch.delenv(precision.CACHE_ENV)
    assert precision.cache_dir().parts[-2:] == (".cache", "sanode")


@pytest.mark.parametrize("supported", [True, False])
def test_cuda_takes_bfloat16_where_the_device_supports_it(supported, monkeypatch, tmp_path):
    """The CUDA branch, by mock: nothing is measured, bfloat16 where supported, torch routes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)

    def never(*args):
        raise AssertionError("nothing is measured on CUDA")

    p = resolve(never, tmp_path, device="cuda")
    assert p.train.name == ("bfloat16" if supported else "float32")
    assert p.train.route == p.eval.route == "torch" and p.lapack == "torch"
    assert p.source == "cuda"


def test_the_record_and_the_summary_name_every_part(tmp_path, all_candidates):
    p = resolve(scripted({"bfloat16/onednn": 0.1, "openblas": 0.5}), tmp_path)
    rec = p.record()
    assert set(rec) == {"train_products", "train_route", "eval_products", "eval_route",
                        "coupling_dtype", "lapack", "calibration", "times_ms"}  # fmt: skip
    assert rec["train_products"] == "bfloat16" and rec["times_ms"]["train:bfloat16/onednn"]
    assert rec["times_ms"]["eval:float32/torch"] and rec["times_ms"]["lapack:openblas"] == 500
    assert "training bfloat16 (oneDNN)" in p.summary()


def test_the_real_measurement_is_short_and_answers_every_candidate(tmp_path):
    """The unscripted timing on this machine: every available candidate gets a time, well
    under a second in all."""
    import time

    t0 = time.perf_counter()
    p = precision.resolve("auto", "auto", loop="float32", coupling_dtype="float32", n=256,
                          batch=200, eval_batch=500, cache_dir=tmp_path)  # fmt: skip
    assert time.perf_counter() - t0 < 5.0  # generous: a loaded CI machine
    assert p.source == "measured" and all(v > 0 for v in p.times.values())
    assert p.train.name in ("float32", "bfloat16")
    assert p.train.route in ("torch", "onednn")


def test_the_route_travels_with_the_model(tmp_path, all_candidates, monkeypatch):
    """A config's measured route reaches the model's loops (no process-wide switch)."""
    from sanode.core import gemm
    from sanode.training.checkpoint import model_from_config

    seen = []
    real = gemm.gemm_route

    def spy(device, dtype, size=gemm.MIN_SIZE, route="auto"):
        seen.append(route)
        return real(device, dtype, size, route)

    monkeypatch.setattr(gemm, "gemm_route", spy)
    monkeypatch.setattr(precision, "_measure", scripted({"float32/onednn": 0.1}))
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    cfg = TrainConfig(train_products="float32", coupling_dtype="float32")
    model = model_from_config(cfg, block_patterns(20, 3, 0.5))
    assert model.products.route == "onednn" and model.precision.train.route == "onednn"
    x = torch.rand(4, 20)
    model(x, 0.5, 0.1).sum().backward()
    assert "onednn" in seen


def test_old_setting_names_load_with_one_deprecation_line(caplog):
    from sanode import choices as config  # the renamed settings live in sanode.choices

    config._warned.clear()
    with caplog.at_level(logging.WARNING, logger="sanode"):
        cfg = TrainConfig.from_dict({"matmul_dtype": "bfloat16", "eval_matmul_dtype": None})
        TrainConfig.from_dict({"matmul_dtype": "bfloat16"})  # once per process
    assert cfg.train_products == "bfloat16" and cfg.eval_products is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'matmul_dtype' is deprecated" in lines[0] and "'train_products'" in lines[0]
    assert "'eval_products'" in lines[1]
    with pytest.raises(ConfigError, match="keep train_products only"):
        TrainConfig.from_dict({"matmul_dtype": "bfloat16", "train_products": "float32"})


def test_a_checkpoint_with_the_old_names_loads(tmp_path, caplog):
    from sanode import choices as config  # the renamed settings live in sanode.choices
    from sanode.files import load_checkpoint, save_checkpoint
    from sanode.training.checkpoint import load_model, model_from_config

    cfg = TrainConfig(dataset="letters", train_products="bfloat16")
    model = model_from_config(cfg, block_patterns(49, 5, 0.5))
    values = cfg.to_dict()
    values["matmul_dtype"] = values.pop("train_products")
    values["eval_matmul_dtype"] = values.pop("eval_products")
    save_checkpoint(tmp_path / "old.pt", {"model": model.state_dict(), "config": values})
    assert "matmul_dtype" in load_checkpoint(tmp_path / "old.pt")["config"]
    config._warned.clear()
    with caplog.at_level(logging.WARNING, logger="sanode"):
        again, cfg2, _ = load_model(tmp_path / "old.pt")
    assert cfg2.train_products == "bfloat16" and again.products == Products("bfloat16")
    # a result written before the rename: nothing to rename, so no deprecation line
    assert not any("deprecated" in r.getMessage() for r in caplog.records)


def test_bench_says_what_auto_did(tmp_path, capsys):
    """``sanode bench`` ends with ``auto: <choice> — step <s>, <share> of the fastest (...)``,
    the share measured against every explicit choice in the same run (<= 1 by definition)."""
    from sanode.cli import main

    out = tmp_path / "b.json"
    argv = ["bench", "--n", "64", "--k", "4", "--batch", "16", "--steps", "5",
            "--train-products", "float32", "--no-naive", "--no-memory", "--eval-steps", "0",
            "--repeats", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("auto: ")]
    assert len(lines) == 1 and " of the fastest (" in lines[0] and "— step " in lines[0]
    (record,) = json.loads(out.with_name("b.auto.json").read_text())
    assert 0 < record["share"] <= 1.0
    assert record["auto_step_s"] == record[f"step_s {record['chosen']}"]
    assert record["fastest_step_s"] == min(v for k, v in record.items() if k.startswith("step_s"))
    assert record["precision"]["train_products"] == record["chosen"].split("/")[0]
    assert main([*argv[:-2], "--no-auto"]) == 0
    assert "auto: " not in capsys.readouterr().out


def test_the_old_bench_and_evaluate_flags_still_work_with_one_line(tmp_path, capsys):
    from sanode.cli import main

    argv = ["bench", "--n", "32", "--k", "4", "--batch", "8", "--steps", "3", "--dtypes",
            "float32", "--no-naive", "--no-memory", "--eval-steps", "0", "--repeats", "1",
            "--no-auto"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--dtypes is deprecated; use --train-products" in err
