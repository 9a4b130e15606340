"""`sanode classify` and the classifier the pipeline registers in MLflow."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sanode.cli import main
from sanode.data.letters import letter_images
from sanode.pipeline import tracking
from sanode.pipeline.classify import (
    AttractorClassifier,
    ClassifyError,
    classify,
    load_classifier,
    read_images,
)
from sanode.training.checkpoint import load_model


@pytest.fixture(scope="module")
def letters_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "letters.pt"
    assert main(["train", "--dataset", "letters", "--letters-copies", "20", "--epochs", "15",
                 "--batch-size", "25", "--lr", "0.03", "--t-eval", "20", "--quiet",
                 "--out", str(path)]) == 0  # fmt: skip
    return path


def test_clean_letters_reach_their_own_attractor(letters_model):
    classifier = load_classifier(str(letters_model))
    letters = letter_images().reshape(5, -1)
    result = classify(classifier, letters)
    assert result.predicted == [0, 1, 2, 3, 4]
    assert result.bucket == ["exact"] * 5 and result.overlap == [1.0] * 5
    assert result.nearest == [0, 1, 2, 3, 4]
    q = classifier(letters)  # what MLflow's pytorch flavour calls: (B, N) -> (B, K)
    assert q.shape == (5, 5) and q.dtype == torch.float32
    assert torch.equal(q.argmax(dim=1), torch.arange(5))


def test_images_from_png_and_npy(tmp_path, letters_model):
    letters = letter_images().reshape(5, 7, 7).numpy()
    np.save(tmp_path / "all.npy", letters)  # (B, H, W)
    np.save(tmp_path / "one.npy", (letters[2] * 255).reshape(-1))  # 0-255, flattened
    # a dark letter on a light background, 4x the size: greyed, resized and inverted
    big = np.kron(1.0 - letters[1], np.ones((4, 4)))
    Image.fromarray((big * 255).astype(np.uint8)).save(tmp_path / "b.png")
    files = [tmp_path / "all.npy", tmp_path / "one.npy", tmp_path / "b.png"]
    x, names = read_images(files, 49, invert=True)  # the letter touches the border
    assert torch.equal(read_images(files[2:], 49, invert=False)[0][0], 1.0 - x[6])
    assert x.shape == (7, 49) and names[:2] == ["all.npy[0]", "all.npy[1]"]
    assert names[5:] == ["one.npy", "b.png"]
    assert torch.equal(x[5], torch.from_numpy(letters[2]).reshape(-1).float())
    assert torch.equal(x[6], torch.from_numpy(letters[1]).reshape(-1).float())
    # a scan: dark ink on white paper with a margin is inverted without being told
    paper = np.ones((28, 28))
    paper[4:24, 4:24] = np.kron(1.0 - letters[3][1:6, 1:6], np.ones((4, 4)))
    Image.fromarray((paper * 255).astype(np.uint8)).save(tmp_path / "scan.png")
    scan, _ = read_images([tmp_path / "scan.png"], 49)
    assert scan.mean() < 0.5 and scan[0, 0] == 0.0
    result = classify(load_classifier(str(letters_model)), x)
    assert result.predicted == [0, 1, 2, 3, 4, 2, 1]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.png", None, "no such file"),
        ("bad.png", b"not an image", "not an image PIL can read"),
        ("bad.npy", np.zeros(10), "does not hold images of 49 pixels"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path, name, content, message, letters_model, capsys):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(ClassifyError, match=message):
        read_images([path], 49)
    assert main(["classify", str(letters_model), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_classifies_test_images_and_draws_trajectories(tmp_path, letters_model, capsys):
    plot = tmp_path / "t.png"
    code = main(["classify", str(letters_model), "--test-images", "3", "--json",
                 "--plot", str(plot)])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[0])
    assert [r["label"] for r in rows] == [0, 0, 0]  # letters' test split starts with A's
    assert all(r["class"] == 0 and r["bucket"] == "exact" for r in rows)
    assert plot.stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["classify", str(letters_model)])  # nothing to classify
    assert "--test-images" in capsys.readouterr().err


def test_registered_model_classifies_like_its_checkpoint(tmp_path, letters_model, monkeypatch):
    """log_model + registry (SQLite store here; the smoke study does it on a server)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts under ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model, cfg, _ = load_model(letters_model)
    classifier = AttractorClassifier.from_config(model, cfg)
    with tracking.run(uri, "e", key={"k": "v"}, name="r") as run:
        version = run.log_model(classifier, registered="sanode-letters", signature=(49, 5),
                                tags={"test_accuracy": 1.0})  # fmt: skip
    # MLflow's fluent API (used by log_model) left no global URI or environment behind
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert mlflow.get_tracking_uri() == "sqlite:////elsewhere/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    assert client.get_model_version("sanode-letters", version).tags["test_accuracy"] == "1.0"
    assert client.get_experiment_by_name("e").tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = load_classifier("models:/sanode-letters/latest")
    x = torch.rand(8, 49)
    assert classify(loaded, x).overlap == classify(classifier, x).overlap
    with pytest.raises(ClassifyError, match="cannot load the MLflow model"):
        load_classifier("models:/sanode-nothing/latest")


def test_a_picture_that_does_not_fit_is_converted_resized_and_warned_about(
    tmp_path, letters_model, capsys
):
    """A 100x60 RGB photo of a 7x7 model: the answer comes with what was done to fit it
    (grayscale, resize from 100x60) and a warning about its aspect ratio and size."""
    photo = tmp_path / "photo.png"
    rgb = np.zeros((60, 100, 3), dtype=np.uint8)
    rgb[10:50, 30:70] = (200, 40, 40)
    Image.fromarray(rgb, "RGB").save(photo)
    assert main(["classify", str(letters_model), str(photo)]) == 0
    err = capsys.readouterr().err
    assert "photo.png: converted RGB to grayscale, resized from 100x60 to 7x7" in err
    assert "warning: aspect ratio 1.67 (not square)" in err
    assert "warning: 100x60 is far from the model's 7x7" in err
    square = tmp_path / "square.png"
    Image.fromarray(np.zeros((7, 7), dtype=np.uint8), "L").save(square)
    assert main(["classify", str(letters_model), str(square)]) == 0
    assert "square.png" not in capsys.readouterr().err  # nothing to say: it fits as it is
