"""bfloat16 matrix products (train_products): gradients, training, evaluation, bench rows."""

import importlib
import json
from pathlib import Path

import pytest
import torch

from sanode import block_patterns
from sanode.cli import main
from sanode.config import ConfigError, TrainConfig
from sanode.core.model import SANode
from sanode.core.products import Products
from sanode.data.datasets import load_split
from sanode.training.evaluate import evaluate
from sanode.training.train import train

# relative; bfloat16 keeps 8 mantissa bits (~0.4 % per rounding). With the clip active a
# rounding can move an item onto or off the clip, where the gradient jumps: a looser bound.
BF16_TOL = {None: 0.02, 1.5: 0.1}


def _grads(model, x0, target, **kw):
    x = x0.clone().requires_grad_(True)
    out = model(x, 3.0, 0.1, **kw) if kw.get("lean", True) is True else None
    if out is None:
        out = model.integrate(x, 3.0, 0.1)
    ((out - target) ** 2).mean().backward()
    return out.detach(), [x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("segment", [None, 7])
@pytest.mark.parametrize("clip", [None, 1.5])
def test_bfloat16_lean_gradients_agree_with_float32_autograd(segment, clip):
    patterns = block_patterns(20, 3, 0.5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 20, generator=gen) * 1.6 - 0.3
    target = patterns[torch.arange(16) % 3].float()
    kw = dict(seed=1, eig_mean=-1.0, clip=clip)
    ref_out, ref = _grads(SANode(patterns, **kw), x0, target, lean=False)  # f32, plain autograd
    model = SANode(patterns, products="bfloat16", **kw)
    out, got = _grads(model, x0, target, grad_segment=segment)
    assert out.dtype == torch.float32
    assert 0 < (out - ref_out).abs().max() < 0.02  # really bfloat16 products, and close
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == r.dtype  # gradients stay in the parameters' dtype
        assert ((g - r).norm() / r.norm()).item() < BF16_TOL[clip]


def test_bfloat16_products_only_with_a_float32_loop():
    patterns = block_patterns(20, 3, 0.5)
    with pytest.raises(ValueError, match="products 'bfloat16' does not fit dtype 'float64'"):
        SANode(patterns, dtype=torch.float64, products="bfloat16")
    with pytest.raises(ConfigError, match="train_products 'bfloat16' does not fit dtype 'float64'"):
        TrainConfig(dtype="float64", train_products="bfloat16")
    model = SANode(patterns, products="bfloat16")
    assert model.dynamics().linear_t.dtype == torch.bfloat16
    assert model.dynamics(torch.float64).linear_t.dtype == torch.float64  # studies in float64
    field = model.vector_field(torch.rand(3, 20))
    assert field.dtype == torch.float32


def test_bfloat16_letters_training_reaches_full_accuracy():
    cfg = TrainConfig(dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, t_train=5.5,
                      t_eval=20.0, epochs=15, seed=0, train_products="bfloat16")  # fmt: skip
    split = load_split(cfg, "train")
    result = train(cfg, split.x, split.y, split.patterns, progress=False)
    assert result.model.products == Products("bfloat16")
    # the trained model evaluates as its config says (float32: eval_products null)
    assert result.model.eval_products == Products("float32")
    result.model.eval_products = Products("bfloat16")
    test = load_split(cfg, "test", letters_eps=0.0)
    ev = evaluate(result.model, test.x, test.y, t_end=cfg.t_eval, dt=cfg.dt)
    assert ev.buckets.exact == len(test.y)  # m_f = 1 at eps_test = 0
    assert float(ev.overlap.mean()) == 1.0
    # the same model evaluated with float32 products lands on the same attractors
    result.model.eval_products = Products("float32")
    ev32 = evaluate(result.model, test.x, test.y, t_end=cfg.t_eval, dt=cfg.dt)
    assert torch.equal(torch.sign(ev32.states), torch.sign(ev.states))


def test_bench_has_bfloat16_rows_against_float32(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = ["bench", "--n", "49", "--k", "5", "--batch", "8", "--steps", "5", "--dtypes",
            "float32", "bfloat16", "--repeats", "1", "--no-memory", "--eval-batch", "16",
            "--eval-steps", "50", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    bf = [r for r in rows if r["dtype"] == "bfloat16"]
    assert {(r["variant"], r["steps"]) for r in bf} == {
        ("autograd", 5), ("sanode", 5), ("sanode-a32", 5), ("sanode-fused", 5), ("eval", 50),
        ("eval-early", 50),
    }  # fmt: skip
    assert all(r["vs_float32"] > 0 and r["reference"] != "naive" for r in bf)
    # each row's share of the run's bfloat16 / float32 matmul ratio (one ratio for the run)
    ratios = {r["matmul_vs_float32"] for r in bf}
    assert len(ratios) == 1 and ratios.pop() > 0
    assert all(r["of_matmul_ratio"] == r["vs_float32"] / r["matmul_vs_float32"] for r in bf)
    x2 = [r for r in rows if r["dtype"] == "bfloat16x2"]  # split-A evaluation rows
    assert {(r["variant"], r["steps"]) for r in x2} == {("eval", 50), ("eval-early", 50)}
    assert all(r["vs_float32"] > 0 and r["kind"] == "eval" for r in x2)
    text = capsys.readouterr().out
    assert "x f32" in text and "matmul ratio bfloat16 / float32 in this run" in text


def test_bench_paired_rounds_interleave_float32_and_bfloat16(tmp_path, capsys, monkeypatch):
    import statistics

    import sanode.lab.bench_paired as bp

    out = tmp_path / "p.json"
    argv = ["bench", "--paired", "3", "--n", "49", "--k", "5", "--batch", "8", "--steps", "4",
            "6", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    assert [(r["steps"], r["rounds"]) for r in rows] == [(4, 3), (6, 3)]
    for r in rows:
        assert r["float32_step_s"] > 0 and r["bfloat16_step_s"] > 0 and r["fused_step_s"] > 0
        for pre in ("", "fused_"):
            assert (r[f"{pre}of_matmul_ratio_min"] <= r[f"{pre}of_matmul_ratio"]
                    <= r[f"{pre}of_matmul_ratio_max"])  # fmt: skip
    assert "of mm" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--paired", "2", "--device", "cuda"])

    # each round's share is its own step ratio over its own matmul ratio: a fake clock that
    # only the fake steps advance (the first call of each is the warm-up)
    now = [0.0]
    steps = {
        "sanode": iter([9.0, 2.0, 4.0]),
        "sanode-a32": iter([9.0, 1.0, 1.0]),
        "sanode-fused": iter([9.0, 1.0, 0.5]),
    }

    def setup(variant, **kw):
        return (lambda: now.__setitem__(0, now[0] + next(steps[variant]))), None

    # four warm-ups, then per round f32, torch.mm f32, bf16, torch.mm bf16
    mm = iter([0.0] * 4 + [3.0, 6.0, 1.0, 1.0] + [2.0, 4.0, 1.0, 1.0])
    monkeypatch.setattr(bp, "_training_setup", setup)
    monkeypatch.setattr(bp, "_mm_seconds", lambda *a: next(mm))
    monkeypatch.setattr(bp, "_clock", lambda: now[0])
    row = bp.paired_speedup(n=20, k=2, batch=4, steps=3, rounds=2)
    assert row["step_ratio"] == 3.0 and row["matmul_ratio"] == 2.5
    assert row["of_matmul_ratio"] == statistics.median([2.0 / 3.0, 4.0 / 2.0])
    assert (row["of_matmul_ratio_min"], row["of_matmul_ratio_max"]) == (2.0 / 3.0, 2.0)
    assert row["torch_matmul_ratio"] == 5.0
    assert row["of_torch_matmul_ratio"] == statistics.median([2.0 / 6.0, 4.0 / 4.0])
    assert row["fused_step_ratio"] == 5.0  # median of 2 / 1 and 4 / 0.5
    assert row["fused_of_matmul_ratio"] == statistics.median([2.0 / 3.0, 8.0 / 2.0])


def test_step_parts_bench_splits_each_step_into_its_parts(monkeypatch):
    # sanode/lab/scripts/step_parts.py (beside bf16_capability.py): each dtype's step, products,
    # coupling and optimiser, and the remainder; tiny sizes, one round
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "sanode" / "lab" / "scripts"))
    step_parts = importlib.import_module("step_parts")
    row = step_parts.measure(steps=3, rounds=1, n=16, k=2, batch=4)
    for dtype in ("float32", "bfloat16"):
        parts = [row[f"{dtype}_{p}_ms"] for p in ("products", "coupling", "optimizer")]
        assert all(t > 0 for t in parts)
        assert row[f"{dtype}_other_ms"] == pytest.approx(row[f"{dtype}_step_ms"] - sum(parts))
    target = row["float32_step_ms"] / (0.8 * row["matmul_ratio"])
    assert row["target_bfloat16_step_ms"] == pytest.approx(target)
    spent = sum(row[f"bfloat16_{p}_ms"] for p in ("products", "coupling", "optimizer"))
    assert row["target_other_ms"] == pytest.approx(target - spent)
    assert row["lapack"] in ("openblas", "torch") and row["gemm"] in ("onednn", "torch")
    assert row["steps"] == 3


def test_time_to_accuracy_runs_on_tiny_data(tmp_path, capsys):
    # target 0.3: bfloat16 GEMMs round differently with and without oneDNN's bfloat16
    # kernels, and this 4-epoch run validates at 0.4 on an AVX2-only CPU (0.5+ with them)
    argv = ["time-to-accuracy", "--dataset", "letters", "--letters-copies", "20",
            "--batch-size", "25", "--epochs", "4", "--lr", "0.03", "--lr-schedule", "onecycle",
            "--lr-warmup", "0.25", "--t-train", "5.5", "--t-eval", "20", "--t-test", "20",
            "--target", "0.3", "--train-products", "bfloat16", "--out", str(tmp_path / "r"),
            "--quiet", "--trace-batches"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "validation H >= 0.300 after" in text and "evaluated with bfloat16 products" in text
    assert "validation H levels: 0.300 epoch" in text
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["train_products"] == "bfloat16" and result["epochs_run"] == 4
    assert result["trained_seed"] == 0 and result["stalled_seeds"] == []
    lines = (tmp_path / "r" / "batches.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 4  # 100 letters in batches of 25, 4 epochs
    assert json.loads(lines[-1])["epoch"] == 4 and "grad_gamma" in json.loads(lines[0])
    assert [r["epoch"] for r in result["batch_trace"]] == [1, 2, 3, 4]
    assert result["eval_products"] == "float32"  # evaluation keeps early exit
    # the training products' route as measured here, recorded with the choice's times
    assert result["gemm"] == result["precision"]["train_route"] in ("torch", "onednn")
    assert result["precision"]["calibration"] in ("measured", "cache")
    walls = [r["wall_s"] for r in result["timeline"]]
    assert walls == sorted(walls) and result["time_to_target_s"] in walls
    first = next(r for r in result["timeline"] if r["val_accuracy"] >= 0.3)
    assert result["epochs_to_target"] == first["epoch"]
    assert result["levels"]["0.300"] == {"epoch": first["epoch"], "wall_s": first["wall_s"]}
    for level, hit in result["levels"].items():  # each level: its first epoch, or None
        reaching = [r for r in result["timeline"] if r["val_accuracy"] >= float(level)]
        want = reaching and {"epoch": reaching[0]["epoch"], "wall_s": reaching[0]["wall_s"]}
        assert hit == (want or None)
    assert result["test"]["n"] == 100
    switches = {sw["eval_products"]: sw for sw in result["eval_switches"]}
    assert set(switches) == {"bfloat16", "bfloat16x2"}  # every mode but its own (float32)
    assert all(sw["items"] == 100 and 0 <= sw["items_changing_bucket"] <= 100
               for sw in switches.values())  # fmt: skip
    assert "evaluated with bfloat16x2 products" in text
    # a rerun resumes the finished run: nothing retrained, the same timeline
    assert main(argv) == 0
    again = json.loads((tmp_path / "r" / "result.json").read_text())
    assert again["timeline"] == result["timeline"]


def test_evaluation_products_follow_eval_matmul_dtype(tmp_path):
    """A bfloat16-trained model is evaluated with float32 products unless eval_products
    says bfloat16 (bfloat16 rounding keeps states from settling below an early-exit tol)."""
    from sanode.training.checkpoint import load_model

    cfg = TrainConfig(dataset="letters", letters_copies=5, batch_size=25, lr=3e-2, epochs=1,
                      train_products="bfloat16")  # fmt: skip
    split = load_split(cfg, "train")
    train(cfg, split.x, split.y, split.patterns, checkpoint_path=tmp_path / "m.pt",
          progress=False)  # fmt: skip
    model, _, _ = load_model(tmp_path / "m.pt")
    assert model.dynamics().linear_t.dtype == torch.float32
    with pytest.raises(ConfigError, match="eval_products 'bfloat16' does not fit"):
        TrainConfig(dtype="float64", eval_products="bfloat16")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    state["config"]["eval_products"] = "bfloat16"
    torch.save(state, tmp_path / "b.pt")
    model, _, _ = load_model(tmp_path / "b.pt")
    assert model.dynamics().linear_t.dtype == torch.bfloat16


def test_split_bfloat16_products_remove_the_rounding_of_a():
    """bfloat16x2: A as a high and a low bfloat16 part. Near an attractor (a pattern is in
    A's kernel, so x A is small beside its terms) A's rounding is the error that matters
    (README); split products remove it, leaving the state's rounding (and the product's
    bfloat16 output, small here)."""
    patterns = block_patterns(49, 4, 0.5)
    model = SANode(patterns, products="bfloat16", seed=3)
    gen = torch.Generator().manual_seed(0)
    x = patterns[torch.arange(64) % 4].float() + 0.02 * torch.randn(64, 49, generator=gen)
    with torch.no_grad():
        exact = model.dynamics(torch.float64).field(x.to(torch.bfloat16).double())
        one = model.dynamics().field(x)  # the state and A rounded
        two = model.dynamics(products=Products("bfloat16x2")).field(x)  # the state rounded
        model.eval_products = Products("bfloat16x2")
        assert model.dynamics().linear_lo_t is not None  # the model's default follows
        assert model.dynamics(products=Products("float32")).linear_lo_t is None
        with pytest.raises(ValueError, match="evaluation mode"):
            model.products = "bfloat16x2"  # training runs one product
    err_one = (one.double() - exact).abs().max()
    err_two = (two.double() - exact).abs().max()
    assert two.dtype == torch.float32 and err_one > 0
    assert err_two < err_one / 5
    # backward integration negates both parts: forward then backward returns near x
    from sanode.core.integrate import integrate

    dyn = model.dynamics()
    back = integrate(dyn, integrate(dyn, x, 0.5, 0.05), 0.5, 0.05, reverse=True)
    assert (back - x).abs().max() < 0.05


def test_bfloat16x2_is_an_evaluation_mode(tmp_path, capsys):
    from sanode.training.checkpoint import load_model

    two = TrainConfig(eval_products="bfloat16x2").precision(20).eval
    assert two.two_parts and two.dtype == torch.bfloat16
    assert TrainConfig(eval_products="bfloat16x2").precision(20).train == Products("float32")
    with pytest.raises(ConfigError, match="train_products 'bfloat16x2' is an evaluation mode"):
        TrainConfig(train_products="bfloat16x2")
    with pytest.raises(ConfigError, match="'bfloat16x2' does not fit dtype 'float64'"):
        TrainConfig(dtype="float64", eval_products="bfloat16x2")
    cfg = TrainConfig(dataset="letters", letters_copies=5, batch_size=25, lr=3e-2, epochs=1,
                      train_products="bfloat16", eval_products="bfloat16x2", t_eval=10.0,
                      eval_tol=1e-4)  # fmt: skip
    split = load_split(cfg, "train")
    test = load_split(cfg, "test", letters_eps=0.0)
    result = train(cfg, split.x, split.y, split.patterns, val=(test.x, test.y),
                   checkpoint_path=tmp_path / "m.pt", progress=False)  # fmt: skip
    assert result.model.products == Products("bfloat16")  # the training loop: one product
    assert 0.0 <= result.history[-1]["val_accuracy"] <= 1.0
    model, _, _ = load_model(tmp_path / "m.pt")
    dyn = model.dynamics()
    assert model.eval_products.two_parts and model.products == Products("bfloat16")
    assert dyn.linear_t.dtype == dyn.linear_lo_t.dtype == torch.bfloat16
    # the CLI switches a float32-evaluated checkpoint to split products and back
    argv = ["evaluate", str(tmp_path / "m.pt"), "--eps-test", "0", "--t-eval", "10", "--json"]
    rows = {}
    for mode in ("float32", "bfloat16x2"):
        capsys.readouterr()
        assert main([*argv, "--eval-products", mode]) == 0
        rows[mode] = json.loads(capsys.readouterr().out)
    assert rows["float32"][0]["exact"] == rows["bfloat16x2"][0]["exact"]  # the same attractors


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_auto_products_are_the_fastest_measured_and_recorded(bf16_faster, tmp_path, monkeypatch):
    """``auto`` (the shipped configs) is whatever measures fastest here: scripted timings where
    bfloat16 is slower (an AVX512F CPU emulating it) keep float32; where oneDNN has no
    bfloat16 kernels at all (an AVX2-only CPU) there is no bfloat16 candidate, so float32
    whatever the timings; the checkpoint records the resolved choice and the times it was
    chosen from."""
    from sanode.core import precision
    from sanode.core.products import native_bfloat16
    from sanode.training.checkpoint import load_checkpoint

    def measure(kind, n, batch, dtype, labels):
        fast = "bfloat16" if bf16_faster else "float32"
        return {k: (1.0 if k.startswith(fast) else 3.0) for k in labels}

    monkeypatch.setattr(precision, "_measure", measure)
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache"))
    want = "bfloat16" if bf16_faster and native_bfloat16() else "float32"
    cfg = TrainConfig(dataset="letters", letters_copies=5, batch_size=25, lr=3e-2, epochs=1,
                      train_products="auto", eval_products="auto")  # fmt: skip
    prec = cfg.precision(49)
    assert prec.train == prec.eval == Products(want)
    wide = TrainConfig(dtype="float64", train_products="auto", coupling_dtype="float64")
    assert wide.precision(49).train == Products("float64")  # a float64 loop keeps float64
    assert SANode(block_patterns(20, 3, 0.5), products="auto").products == Products(want)
    split = load_split(cfg, "train")
    result = train(cfg, split.x, split.y, split.patterns, checkpoint_path=tmp_path / "m.pt",
                   progress=False)  # fmt: skip
    assert result.model.products == Products(want)
    saved = load_checkpoint(tmp_path / "m.pt")
    assert saved["precision"]["train_products"] == saved["precision"]["eval_products"] == want
    assert saved["precision"]["times_ms"]  # what it was chosen from
    assert saved["config"]["train_products"] == "auto"


def test_native_bfloat16_answers_for_this_machine():
    """The capability check itself: a bool on the CPU, False for a device kind without
    bfloat16 kernels; on a CPU it answers what oneDNN says."""
    from sanode.core.products import native_bfloat16

    assert native_bfloat16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert native_bfloat16("cpu") == native_bfloat16()
    assert native_bfloat16("meta") is False
    with pytest.raises(ConfigError, match="must be one of"):
        TrainConfig(train_products="fastest")
