import gzip
import urllib.error

import numpy as np
import pytest
import torch

from sanode.data import raw as data
from sanode.data.raw import DataError, load_images, prepare_raw

from .idx import write_mirror


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_mirror(tmp_path, gz):
    arrays = write_mirror(tmp_path / "mirror", gz=gz)
    x, y = load_images(
        "mnist", "train", tmp_path / "data", mirror=tmp_path / "mirror", verify_checksums=False
    )
    images, labels = arrays["train"]
    assert x.shape == (40, 784) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(images.reshape(40, -1).astype(np.float32)) / 255)
    assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    xt, _ = load_images("mnist", "test", tmp_path / "data", verify_checksums=False, download=False)
    assert xt.shape == (20, 784)  # second call reads the cache, no mirror needed


def test_mirror_from_environment_and_fashion(tmp_path, monkeypatch):
    write_mirror(tmp_path / "m", folder="FashionMNIST")
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "m"))
    x, y = load_images("fashion", "test", tmp_path / "d", verify_checksums=False, per_class=2)
    assert x.shape == (20, 784)
    assert torch.equal(torch.bincount(y), torch.full((10,), 2))


def test_checksum_mismatch_names_file_and_fix(tmp_path):
    write_mirror(tmp_path / "m")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has MD5 .*no-verify-checksums"):
        prepare_raw("mnist", tmp_path / "d", mirror=tmp_path / "m")


def test_corrupt_file_is_named(tmp_path):
    write_mirror(tmp_path / "m", gz=False)
    f = tmp_path / "m" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is corrupt.*delete it"):
        prepare_raw("mnist", tmp_path / "d", mirror=tmp_path / "m", verify_checksums=False)


def test_bad_gzip_in_mirror_is_named(tmp_path):
    write_mirror(tmp_path / "m")
    f = tmp_path / "m" / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    f.write_bytes(gzip.compress(b"x")[:5])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is not a readable gzip"):
        prepare_raw("mnist", tmp_path / "d", mirror=tmp_path / "m", verify_checksums=False)
    # nothing half-written is left behind
    assert not (tmp_path / "d" / "MNIST" / "raw" / "train-labels-idx1-ubyte").exists()
    assert not list((tmp_path / "d" / "MNIST" / "raw").glob("*.part"))


def test_missing_mirror_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_raw("mnist", tmp_path / "d", mirror=tmp_path / "nowhere")
    write_mirror(tmp_path / "m")
    (tmp_path / "m" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte of MNIST is not in the mirror"):
        prepare_raw("mnist", tmp_path / "d", mirror=tmp_path / "m", verify_checksums=False)


def test_download_failure_says_how_to_use_a_mirror(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("no network")

    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    monkeypatch.setattr(data, "_torchvision_class", lambda name: Offline)
    with pytest.raises(DataError, match=r"could not download MNIST.*SANODE_DATA_MIRROR"):
        prepare_raw("mnist", tmp_path / "d")


def test_unknown_names_are_explained(tmp_path):
    with pytest.raises(DataError, match="unknown image data set 'cifar'"):
        prepare_raw("cifar", tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        load_images("mnist", "val", tmp_path)


def test_balanced_subset_is_seeded_and_checked():
    labels = torch.arange(30) % 3
    a = data.balanced_subset(labels, 4, seed=1)
    assert torch.equal(a, data.balanced_subset(labels, 4, seed=1))
    assert torch.equal(torch.bincount(labels[a]), torch.tensor([4, 4, 4]))
    with pytest.raises(DataError, match="fewer than per_class"):
        data.balanced_subset(labels, 11)


SHARED_MIRROR = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_MIRROR / "MNIST").is_dir(), reason="no local MNIST mirror here")
def test_real_mirror_matches_canonical_checksums(tmp_path):
    sums = prepare_raw("mnist", tmp_path, mirror=SHARED_MIRROR)
    assert sums == data.CANONICAL_MD5["MNIST"]
    x, y = load_images("mnist", "test", tmp_path)
    assert x.shape == (10_000, 784) and int(y.bincount().min()) > 800
