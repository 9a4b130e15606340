"""A user's own data set (sanode.data.custom): an .npz of arrays, a folder of images, a
non-square N, every bad case as one line with nothing written, and the CLI from end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sanode import TrainConfig
from sanode.cli import main
from sanode.data.datasets import load_split
from sanode.data.raw import DataError

from .workflow_helpers import ROOT

RNG = np.random.default_rng(0)


def _blocks(n_per_class: int, k: int, side: int, *, seed: int = 0, noise: float = 0.1):
    """Images (M, side, side): class c a bright band of rows, plus noise; uint8 0..255."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    rows = side // k
    for c in range(k):
        for _ in range(n_per_class):
            img = rng.random((side, side)) * noise
            img[c * rows : (c + 1) * rows] += 1.0 - noise
            x.append((img * 255).astype(np.uint8))
            y.append(c)
    return np.stack(x), np.array(y)


def write_npz(path, *, k=4, side=8, per_class=12, **override):
    x_tr, y_tr = _blocks(per_class, k, side, seed=0)
    x_te, y_te = _blocks(per_class // 2, k, side, seed=1)
    arrays = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, **override}
    np.savez(path, **arrays)
    return path


def write_folder(root, *, k=3, side=12, per_class=6, sizes=None):
    for split, seed in (("train", 0), ("test", 1)):
        x, y = _blocks(per_class, k, side, seed=seed)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / f"class_{'abc'[label]}"
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(img, "L").convert("RGB")  # grayscale conversion tested
            if sizes is not None and i % 2:
                picture = picture.resize(sizes)
            picture.save(folder / f"{i}.png")
    return root


def test_an_npz_of_8x8_images_with_four_classes(tmp_path):
    path = write_npz(tmp_path / "set.npz")
    cfg = TrainConfig(dataset=str(path))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.x.shape == (48, 64) and test.x.shape == (24, 64)
    assert train.patterns.shape == (4, 64) and train.num_classes == 4
    # scaled by the range of both arrays together: 0..255 -> 0..1
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) == pytest.approx(1.0, abs=0.01)
    assert list(train.checksums) == ["set.npz"]
    flat = write_npz(tmp_path / "flat.npz", x_train=RNG.random((20, 10)) * 7,
                     y_train=np.arange(20) % 3, x_test=RNG.random((6, 10)) * 7,
                     y_test=np.arange(6) % 3)  # fmt: skip
    split = load_split(TrainConfig(dataset=str(flat)), "train")
    assert split.x.shape == (20, 10) and split.patterns.shape == (3, 10)  # non-square N


def test_a_folder_of_12x12_pngs_with_three_classes(tmp_path):
    root = write_folder(tmp_path / "pictures")
    cfg = TrainConfig(dataset=str(root))
    train = load_split(cfg, "train")
    assert train.x.shape == (18, 144) and train.patterns.shape == (3, 144)
    assert sorted(train.y.unique().tolist()) == [0, 1, 2]
    mixed = write_folder(tmp_path / "mixed", sizes=(10, 10))
    with pytest.raises(DataError, match=r"mixed sizes .* set image_size"):
        load_split(TrainConfig(dataset=str(mixed)), "train")
    resized = load_split(TrainConfig(dataset=str(mixed), image_size=10), "train")
    assert resized.x.shape == (18, 100)


def test_a_non_square_n_is_drawn_as_a_row(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sanode.pipeline.plots import image_panel

    fig, ax = plt.subplots()
    image_panel(ax, np.linspace(0, 1, 10), "row")
    assert ax.images[0].get_array().shape == (1, 10)
    image_panel(ax, np.linspace(0, 1, 9), "square")
    assert ax.images[1].get_array().shape == (3, 3)
    plt.close(fig)


def _bad_npz(tmp_path, name, **override):
    return write_npz(tmp_path / f"{name}.npz", **override)


BAD = {
    "n_below_k_plus_2": (lambda p: _bad_npz(p, "small", x_train=RNG.random((8, 4)),
                                            y_train=np.arange(8) % 3,
                                            x_test=RNG.random((4, 4)),
                                            y_test=np.arange(4) % 3),
                         "N = 4 pixels for K = 3 classes"),
    "labels_outside": (lambda p: _bad_npz(p, "labels", y_test=np.full(24, 7)),
                       "labels must be the integers 0..K-1"),
    "missing_class": (lambda p: _bad_npz(p, "gap", y_train=np.repeat([0, 1, 3, 3], 12)),
                      "class(es) [2] of 0..3 have no training image"),
    "lengths": (lambda p: _bad_npz(p, "lengths", y_train=np.zeros(5, dtype=int)),
                "train has 48 images but 5 labels"),
    "nan": (lambda p: _bad_npz(p, "nan", x_test=np.full((24, 8, 8), np.nan)),
            "x_test holds NaN or infinite values"),
    "mixed_sizes": (lambda p: write_folder(p / "mixed", sizes=(10, 10)),
                    "images of mixed sizes"),
    "empty_class": (lambda p: (write_folder(p / "empty"),
                               (p / "empty" / "train" / "class_d").mkdir())[0],
                    "an empty class folder"),
    "not_an_image": (lambda p: (write_folder(p / "junk"), (p / "junk" / "train" / "class_a"
                                                            / "notes.txt").write_text("x"))[0],
                     "notes.txt: not an image PIL can read"),
    "no_such_path": (lambda p: p / "nothing-here",
                     "neither a data set name"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_data_set_is_one_line_and_nothing_is_written(case, tmp_path, capsys):
    make, message = BAD[case]
    path = make(tmp_path)
    out = tmp_path / "out" / "m.pt"
    code = main(["train", "--dataset", str(path), "--epochs", "1", "--quiet",
                 "--data-root", str(tmp_path / "data"), "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err
    assert not out.exists() and not (tmp_path / "out").exists()


def test_train_then_evaluate_an_npz_with_no_other_flag(tmp_path, capsys):
    path = write_npz(tmp_path / "set.npz")
    model = tmp_path / "m.pt"
    argv = ["train", "--dataset", str(path), "--epochs", "3", "--batch-size", "12",
            "--lr", "0.03", "--t-train", "2.0", "--t-eval", "4.0", "--quiet",
            "--out", str(model)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model)]) == 0  # the test split comes from the file
    out = capsys.readouterr().out
    assert "exact" in out and "accuracy" in out and "24" in out  # 24 test images scored
    from sanode.training.checkpoint import load_model

    net, cfg, _ = load_model(model)
    assert cfg.dataset == str(path) and net.num_nodes == 64 and net.num_classes == 4


def test_torchvision_names_are_known_and_a_bad_emnist_split_is_one_line():
    from sanode.config import ConfigError, dataset_kind, named_sets

    assert {"kmnist", "qmnist", "emnist-balanced"} <= set(named_sets())
    assert dataset_kind("kmnist") == "torchvision" and dataset_kind("x.npz") == "npz"
    with pytest.raises(ConfigError, match="EMNIST has the splits"):
        TrainConfig(dataset="emnist-everything")
    assert torch.is_tensor(load_split(TrainConfig(), "train").x)  # letters unchanged


@pytest.mark.slow
def test_the_dag_runs_end_to_end_on_an_npz(tmp_path):
    """prepare -> tune -> evaluate -> aggregate -> figures -> the analyses that apply, on an
    .npz of 8x8 images with K = 4 that the test writes (N and K from the data)."""
    import pandas as pd

    from .workflow_helpers import snakemake, workflow_env, write_config

    data = write_npz(tmp_path / "mine.npz")
    config = {
        "project": {"data_root": "data", "mirror": None, "verify_checksums": True,
                    "workdir": "."},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "own"},
        "ray": {"address": None, "num_cpus": None, "gpus": 0},
        "studies": {"own": {
            "train": {"dataset": str(data), "batch_size": 12, "epochs": 2, "lr": 0.03,
                      "t_train": 2.0, "t_eval": 4.0, "dt": 0.1},
            "prepare": {"val_fraction": 0.25},
            "search_space": {"eps_train": [0.0, 0.2]},
            "evaluate": {"eps_test": [0.0, 0.3], "mse_items": 5, "mse_every": 5},
        }},
        "analyses": {"baselines": {"epochs": 3, "batch_size": 12, "patience": 2},
                     "census": {"count": 10, "t_end": 5.0}, "cases": {"study": "own"}},
    }  # fmt: skip
    path = write_config(tmp_path / "own.yaml", config)
    assert main(["check-config", str(path)]) == 0
    res = snakemake(tmp_path, "--cores", "2", "--configfile", str(path),
                    env=workflow_env(tmp_path), timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr[-5000:]
    results = tmp_path / "results"
    accuracy = pd.read_parquet(results / "tables" / "accuracy.parquet")
    assert set(accuracy["study"]) == {"own"} and (accuracy["n"] == 24).all()
    assert sorted(accuracy["eps_train"].unique()) == [0.0, 0.2]
    base = pd.read_parquet(results / "tables" / "baselines.parquet")
    assert set(base["model"]) == {"logistic", "mlp"}
    for figure in ("fig3_mf_vs_eps_test_own", "fig7_three_cases", "fig3_versus_mlp_own"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 5_000, figure


def test_an_analysis_that_cannot_apply_is_refused_by_the_config_check(tmp_path, capsys):
    """A test-image class the data set does not have: one line from check-config, before any
    job, instead of a crash in the analysis' job."""
    import yaml

    data = write_npz(tmp_path / "mine.npz")  # K = 4
    config = yaml.safe_load((ROOT / "workflow" / "config" / "smoke.yaml").read_text())
    config["studies"] = {"own": {"train": {"dataset": str(data), "t_train": 1.0, "t_eval": 2.0}}}
    config["analyses"] = {"mse_time": {"targets": [{"study": "own", "label": 7}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}: analyses.mse_time: label 7 is not a class of study 'own' (its data "
                   "set has K = 4 classes); choose a label in 0..3"]  # fmt: skip
    config["analyses"]["mse_time"]["targets"][0]["label"] = 3
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(path)]) == 0


def test_kmnist_is_read_from_a_mirror_in_torchvisions_layout(tmp_path):
    """torchvision's other sets by name: KMNIST from ``<mirror>/KMNIST/raw`` (no network), its
    files' MD5s recorded; N = 784 and K = 10 from the data."""
    from .idx import write_mirror

    mirror = tmp_path / "mirror"
    arrays = write_mirror(mirror, "KMNIST", n_train=30, n_test=10, gz=False)
    cfg = TrainConfig(dataset="kmnist", mirror=str(mirror), data_root=str(tmp_path / "data"))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.x.shape == (30, 784) and test.x.shape == (10, 784)
    assert train.patterns.shape == (10, 784)
    assert torch.equal(train.y, torch.from_numpy(arrays["train"][1].astype(np.int64)))
    assert any(name.startswith("train-images") for name in train.checksums)
    assert not (tmp_path / "data").exists()  # read in place, nothing downloaded
